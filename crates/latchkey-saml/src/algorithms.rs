//! Which XML-signature algorithms a connection accepts. SHA-1 (signature or digest) is refused
//! unless the connection explicitly allows it; everything not listed here is refused.

pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const RSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384";
pub const RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
pub const ECDSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512";
pub const DIGEST_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
pub const DIGEST_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const DIGEST_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
pub const DIGEST_SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgorithmPolicy {
    /// Accept RSA-SHA1 signatures and SHA-1 digests (legacy IdPs only; warned about).
    pub allow_sha1: bool,
}

impl AlgorithmPolicy {
    pub fn signature_allowed(&self, uri: &str) -> bool {
        matches!(
            uri,
            RSA_SHA256 | RSA_SHA384 | RSA_SHA512 | ECDSA_SHA256 | ECDSA_SHA384 | ECDSA_SHA512
        ) || (self.allow_sha1 && uri == RSA_SHA1)
    }

    pub fn digest_allowed(&self, uri: &str) -> bool {
        matches!(uri, DIGEST_SHA256 | DIGEST_SHA384 | DIGEST_SHA512)
            || (self.allow_sha1 && uri == DIGEST_SHA1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_only_when_allowed() {
        let strict = AlgorithmPolicy::default();
        assert!(!strict.signature_allowed(RSA_SHA1));
        assert!(!strict.digest_allowed(DIGEST_SHA1));
        assert!(strict.signature_allowed(RSA_SHA256) && strict.signature_allowed(ECDSA_SHA256));
        assert!(!strict.signature_allowed("http://www.w3.org/2000/09/xmldsig#hmac-sha1"));
        let legacy = AlgorithmPolicy { allow_sha1: true };
        assert!(legacy.signature_allowed(RSA_SHA1) && legacy.digest_allowed(DIGEST_SHA1));
    }
}
