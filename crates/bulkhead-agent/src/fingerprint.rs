//! Digests of resource versions, so that a source can tell a changed resource from an
//! unchanged one without keeping a copy of each (the calc graph holds the one copy the
//! agent needs).
//!
//! A digest is 128 bits: two SipHash-1-3 hashes of [`Resource::write_content`], keyed at
//! random per process, so that nobody can craft two versions that collide.

use std::hash::{BuildHasher, Hasher, RandomState};

use bulkhead_api::Resource;

/// The digest of one resource version (its revision left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64, u64);

/// Computes fingerprints; those of one `Fingerprints` compare with each other only.
#[derive(Debug, Clone)]
pub struct Fingerprints([RandomState; 2]);

impl Default for Fingerprints {
    fn default() -> Fingerprints {
        Fingerprints([RandomState::new(), RandomState::new()])
    }
}

impl Fingerprints {
    /// The fingerprint of `r`.
    pub fn of(&self, r: &Resource) -> Fingerprint {
        let mut w = HashWriter([self.0[0].build_hasher(), self.0[1].build_hasher()]);
        // Writing into hashers cannot fail; if serialisation ever did, the digest of what
        // was written still differs from that of the whole, and the version counts as
        // changed, which costs an update and nothing more.
        let _ = r.write_content(&mut w);
        Fingerprint(w.0[0].finish(), w.0[1].finish())
    }
}

/// An `io::Write` into two hashers.
struct HashWriter<H>([H; 2]);

impl<H: Hasher> std::io::Write for HashWriter<H> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0[0].write(buf);
        self.0[1].write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(yaml: &str) -> Resource {
        bulkhead_api::load_str("t.yaml", yaml)
            .expect("loads")
            .remove(0)
            .resource
    }

    #[test]
    fn equal_versions_have_equal_fingerprints_and_changes_change_them() {
        let f = Fingerprints::default();
        let yaml = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {order: 1, selector: app == 'a', ingress: [{action: Allow}]}\n";
        let a = f.of(&resource(yaml));
        assert_eq!(a, f.of(&resource(yaml)));
        assert_eq!(
            a,
            f.of(&resource(
                &yaml.replace("name: p", "name: p, resourceVersion: '9'")
            ))
        );
        assert_ne!(a, f.of(&resource(&yaml.replace("order: 1", "order: 2"))));
        assert_ne!(a, f.of(&resource(&yaml.replace("Allow", "Deny"))));
        // The two halves are independent hashes.
        assert_ne!(a.0, a.1);
    }
}
