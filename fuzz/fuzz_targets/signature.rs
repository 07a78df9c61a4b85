//! The signature header: `decode_signature` on any bytes, and `verify_signature` with the
//! input as both header value and body.

#![no_main]

use alert_inbox::receiver::verify::{
    decode_signature, sign, verify_signature, VerifyError, SIGNATURE_HEADER,
};
use alert_inbox::secret::Secret;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = decode_signature(data);
    if decoded.is_ok() {
        // Only `sha256=` and 64 hex digits, after trimming, decode.
        let trimmed = data.trim_ascii();
        assert_eq!(trimmed.len(), 71);
        assert!(trimmed[..7].eq_ignore_ascii_case(b"sha256="));
        assert!(trimmed[7..].iter().all(u8::is_ascii_hexdigit));
    }

    let secrets = [Secret::new("fuzz secret")];
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, value);
    let result = verify_signature(&secrets, &headers, data);
    match decoded {
        Err(error) => assert_eq!(result, Err(error)),
        Ok(_) => assert!(matches!(result, Ok(()) | Err(VerifyError::WrongSignature))),
    }

    // The input as a body, signed correctly, always verifies.
    let signature = sign(&secrets[0], data);
    headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(&signature).unwrap());
    assert_eq!(verify_signature(&secrets, &headers, data), Ok(()));
});
