//! What the kernel tests share.

/// True when this process may create network namespaces and run `nft`; otherwise says
/// why the test is skipped.
pub fn capable() -> bool {
    let nft = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match bulkhead_netns::preflight() {
        Ok(()) if nft => true,
        Ok(()) => {
            println!("skipped: needs nft");
            false
        }
        Err(e) => {
            println!("skipped: needs root and ip netns ({e})");
            false
        }
    }
}
