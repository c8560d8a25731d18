//! Which JWS algorithm a JSON Web Key may verify. Both services fetch keys from another
//! party (the resource server from the authorization server's JWKS, the authorization
//! server from an upstream identity provider's) and must agree on this rule.

use jsonwebtoken::jwk::KeyAlgorithm;
use jsonwebtoken::Algorithm;

/// The JWS algorithm a JWK's `alg` names; `None` for encryption and HMAC algorithms,
/// which no public key set may offer for signatures.
pub fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_signature_algorithms_are_accepted() {
        assert_eq!(
            signing_algorithm(KeyAlgorithm::ES256),
            Some(Algorithm::ES256)
        );
        assert_eq!(
            signing_algorithm(KeyAlgorithm::EdDSA),
            Some(Algorithm::EdDSA)
        );
        assert_eq!(signing_algorithm(KeyAlgorithm::HS256), None);
        assert_eq!(signing_algorithm(KeyAlgorithm::RSA_OAEP), None);
    }
}
