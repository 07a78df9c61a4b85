//! HTTP Basic auth and the `sha256=` HMAC signature, both checked in constant time.
//!
//! Credentials are compared as SHA-256 digests with `subtle`, so neither the content nor
//! the length of a guess changes the time taken. The signature is hex-decoded and checked
//! with `Mac::verify_slice`, which compares in constant time. No error carries the
//! expected value.

use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The signature header as RealTheory's documentation spells it.
pub const SIGNATURE_HEADER: &str = "http-x-hub-signature-256";
/// The same header as GitHub and most senders spell it.
pub const SIGNATURE_HEADER_ALT: &str = "x-hub-signature-256";
const SIGNATURE_PREFIX: &str = "sha256=";

type HmacSha256 = Hmac<Sha256>;

/// The reason a request failed authentication. The message is safe to send to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing Authorization header")]
    MissingCredentials,
    #[error("Authorization header is not HTTP Basic with base64 username:password")]
    MalformedCredentials,
    #[error("wrong username or password")]
    WrongCredentials,
    #[error("missing signature header HTTP-X-HUB-SIGNATURE-256")]
    MissingSignature,
    #[error("more than one signature header")]
    DuplicateSignature,
    #[error("signature header is not sha256= followed by 64 hex digits")]
    MalformedSignature,
    #[error("signature does not match the body")]
    WrongSignature,
}

impl VerifyError {
    /// Returns whether the failure is about the signature rather than the credentials.
    pub fn is_signature(self) -> bool {
        matches!(
            self,
            Self::MissingSignature
                | Self::DuplicateSignature
                | Self::MalformedSignature
                | Self::WrongSignature
        )
    }
}

/// Expected Basic credentials, kept as digests so comparisons take constant time.
#[derive(Clone)]
pub struct BasicCredentials {
    user_digest: [u8; 32],
    password_digest: [u8; 32],
}

impl BasicCredentials {
    pub fn new(user: &str, password: &Secret) -> Self {
        Self {
            user_digest: Sha256::digest(user.as_bytes()).into(),
            password_digest: Sha256::digest(password.expose().as_bytes()).into(),
        }
    }

    /// Checks the `Authorization` header against these credentials.
    pub fn verify(&self, headers: &HeaderMap) -> Result<(), VerifyError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let value = values.next().ok_or(VerifyError::MissingCredentials)?;
        if values.next().is_some() {
            return Err(VerifyError::MalformedCredentials);
        }

        let value = value
            .to_str()
            .map_err(|_| VerifyError::MalformedCredentials)?;
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or(VerifyError::MalformedCredentials)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(VerifyError::MalformedCredentials);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| VerifyError::MalformedCredentials)?;
        // RFC 7617: the user-id cannot contain a colon, the password can.
        let colon = decoded
            .iter()
            .position(|&byte| byte == b':')
            .ok_or(VerifyError::MalformedCredentials)?;
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);

        let user_ok = Sha256::digest(user).ct_eq(&self.user_digest);
        let password_ok = Sha256::digest(password).ct_eq(&self.password_digest);
        if bool::from(user_ok & password_ok) {
            Ok(())
        } else {
            Err(VerifyError::WrongCredentials)
        }
    }
}

/// Checks the signature header of `body` against every configured secret.
///
/// Each secret is tried in full, whether or not an earlier one matched, so the time taken
/// does not tell which secret is in use.
pub fn verify_signature(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), VerifyError> {
    let mut values = headers
        .get_all(SIGNATURE_HEADER)
        .iter()
        .chain(headers.get_all(SIGNATURE_HEADER_ALT).iter());
    let value = values.next().ok_or(VerifyError::MissingSignature)?;
    if values.next().is_some() {
        return Err(VerifyError::DuplicateSignature);
    }

    let expected = decode_signature(value.as_bytes())?;
    let mut matched = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(VerifyError::WrongSignature)
    }
}

/// Decodes `sha256=<64 hex digits>` (either case) into the 32 MAC bytes.
pub fn decode_signature(value: &[u8]) -> Result<[u8; 32], VerifyError> {
    let value = value.trim_ascii();
    let prefix_len = SIGNATURE_PREFIX.len();
    if value.len() != prefix_len + 64
        || !value[..prefix_len].eq_ignore_ascii_case(SIGNATURE_PREFIX.as_bytes())
    {
        return Err(VerifyError::MalformedSignature);
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&value[prefix_len..], &mut bytes)
        .map_err(|_| VerifyError::MalformedSignature)?;
    Ok(bytes)
}

/// Computes the header value RealTheory sends for `body`: `sha256=` and lower-case hex.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Builds the `Authorization` header value for HTTP Basic auth.
pub fn basic_header(user: &str, password: &Secret) -> String {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
    format!("Basic {token}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // GitHub's published example for X-Hub-Signature-256.
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn github_vector_signs() {
        assert_eq!(
            sign(&Secret::new(GITHUB_SECRET), GITHUB_BODY),
            GITHUB_SIGNATURE
        );
    }

    #[test]
    fn github_vector_verifies_under_both_names() {
        let secrets = [Secret::new(GITHUB_SECRET)];
        for name in ["HTTP-X-HUB-SIGNATURE-256", "X-Hub-Signature-256"] {
            let map = headers(&[(name, GITHUB_SIGNATURE)]);
            let name_lower: &'static str = if name.starts_with("HTTP") {
                SIGNATURE_HEADER
            } else {
                SIGNATURE_HEADER_ALT
            };
            assert!(map.contains_key(name_lower));
            assert_eq!(verify_signature(&secrets, &map, GITHUB_BODY), Ok(()));
        }
    }

    #[test]
    fn upper_case_hex_accepted() {
        let secrets = [Secret::new(GITHUB_SECRET)];
        let upper = format!("sha256={}", GITHUB_SIGNATURE[7..].to_ascii_uppercase());
        let map = headers(&[(SIGNATURE_HEADER, &upper)]);
        assert_eq!(verify_signature(&secrets, &map, GITHUB_BODY), Ok(()));
    }

    #[test]
    fn rotated_secret_accepted() {
        let secrets = [Secret::new("old secret"), Secret::new(GITHUB_SECRET)];
        let map = headers(&[(SIGNATURE_HEADER, GITHUB_SIGNATURE)]);
        assert_eq!(verify_signature(&secrets, &map, GITHUB_BODY), Ok(()));
    }

    #[test]
    fn signature_shapes_rejected() {
        let secrets = [Secret::new(GITHUB_SECRET)];
        let cases = [
            ("", VerifyError::MalformedSignature),
            ("sha256=", VerifyError::MalformedSignature),
            (
                "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
                VerifyError::MalformedSignature,
            ),
            (&GITHUB_SIGNATURE[..70], VerifyError::MalformedSignature),
            (
                "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                VerifyError::MalformedSignature,
            ),
            (
                "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                VerifyError::MalformedSignature,
            ),
            (
                "sha256=857107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                VerifyError::WrongSignature,
            ),
        ];
        for (value, expected) in cases {
            let map = headers(&[(SIGNATURE_HEADER, value)]);
            assert_eq!(
                verify_signature(&secrets, &map, GITHUB_BODY),
                Err(expected),
                "{value:?}"
            );
        }
    }

    #[test]
    fn missing_signature_rejected() {
        let secrets = [Secret::new(GITHUB_SECRET)];
        assert_eq!(
            verify_signature(&secrets, &HeaderMap::new(), GITHUB_BODY),
            Err(VerifyError::MissingSignature)
        );
    }

    #[test]
    fn two_signature_headers_rejected() {
        let secrets = [Secret::new(GITHUB_SECRET)];
        let map = headers(&[
            (SIGNATURE_HEADER, GITHUB_SIGNATURE),
            (SIGNATURE_HEADER_ALT, GITHUB_SIGNATURE),
        ]);
        assert_eq!(
            verify_signature(&secrets, &map, GITHUB_BODY),
            Err(VerifyError::DuplicateSignature)
        );
    }

    #[test]
    fn basic_auth_accepts_colon_in_password() {
        let password = Secret::new("p@ss:word with spaces");
        let credentials = BasicCredentials::new("realtheory", &password);
        let map = headers(&[("authorization", &basic_header("realtheory", &password))]);
        assert_eq!(credentials.verify(&map), Ok(()));
    }

    #[test]
    fn basic_auth_rejections() {
        let credentials = BasicCredentials::new("realtheory", &Secret::new("pw"));
        let wrong = basic_header("realtheory", &Secret::new("nope"));
        let cases = [
            (None, VerifyError::MissingCredentials),
            (
                Some("Basic !!!not-base64"),
                VerifyError::MalformedCredentials,
            ),
            (
                Some("Basic bm9jb2xvbg=="),
                VerifyError::MalformedCredentials,
            ),
            (Some("Bearer abc"), VerifyError::MalformedCredentials),
            (Some(wrong.as_str()), VerifyError::WrongCredentials),
        ];
        for (value, expected) in cases {
            let map = match value {
                Some(value) => headers(&[("authorization", value)]),
                None => HeaderMap::new(),
            };
            assert_eq!(credentials.verify(&map), Err(expected), "{value:?}");
        }
    }
}
