//! The inbox filter language on any text: no panic, an error's position lies inside the
//! query, and every filter that parses runs as SQL against a real store.

#![no_main]

use std::sync::{Mutex, OnceLock};

use alert_inbox::filter;
use alert_inbox::store::{query, Store};
use libfuzzer_sys::fuzz_target;

/// 2023-11-14T22:13:20Z, so `@age` terms resolve the same way on every run.
const NOW_MS: i64 = 1_700_000_000_000;

/// Returns the store shared by every input of the run. Statics are never dropped, so its
/// temporary directory stays behind after the run.
fn store() -> &'static Mutex<(tempfile::TempDir, rusqlite::Connection)> {
    static STORE: OnceLock<Mutex<(tempfile::TempDir, rusqlite::Connection)>> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("failed to create a temporary directory");
        let (_, connection) = Store::open(dir.path()).expect("failed to open the store");
        Mutex::new((dir, connection))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match filter::parse(text, NOW_MS) {
        Ok(parsed) => parsed,
        Err(error) => {
            assert!(text.is_char_boundary(error.position), "{error:?}");
            return;
        }
    };

    let guard = store().lock().unwrap();
    let connection = &guard.1;
    if let Err(error) = query::count(connection, &parsed) {
        panic!("count failed for {text:?} ({parsed:?}): {error}");
    }
    if let Err(error) = query::list(connection, &parsed, None, 10) {
        panic!("list failed for {text:?} ({parsed:?}): {error}");
    }
});
