//! What the kernel tests share.

/// True when this process may create network namespaces and run `nft`; otherwise says
/// why the test is skipped.
pub fn capable() -> bool {
    bulkhead_netns::kernel_tests_can_run(true)
}
