//! The payload parser on any bytes: no panic, and every accepted alert keeps its body and
//! has a usable id.

#![no_main]

use alert_inbox::model::{parse, MAX_ID_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(alert) = parse(data) else {
        return;
    };
    assert_eq!(alert.payload.as_bytes(), data);
    assert!(!alert.id.trim().is_empty());
    assert!(alert.id.len() <= MAX_ID_LEN);
});
