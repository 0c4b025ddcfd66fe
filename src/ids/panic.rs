//! Where a panic happened, handed from the panic hook to the code that
//! caught it.
//!
//! The hook `Telemetry::install` sets runs on the panicking thread before
//! the unwinding reaches the tower layer's `catch_unwind`; the hook knows
//! the location (and the backtrace, when `RUST_BACKTRACE` asks for one), the
//! catching code does not. A thread-local carries them across: set only by
//! that hook, and only while the layer is catching (see [`catch`]); a panic
//! elsewhere (a spawned task) is logged by the hook itself.

use std::{
    any::Any,
    cell::{Cell, RefCell},
    panic::AssertUnwindSafe,
};

/// What the hook saw of a panic it left to the catching code.
#[derive(Debug, Default)]
pub(crate) struct PanicSite {
    /// `file:line:column`.
    pub(crate) location: Option<String>,
    /// The backtrace, when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) is set.
    pub(crate) backtrace: Option<String>,
}

thread_local! {
    static SITE: RefCell<Option<PanicSite>> = const { RefCell::new(None) };
    static CATCHING: Cell<u32> = const { Cell::new(0) };
}

/// Run `f` with its panics caught, the thread marked as catching them so
/// the hook leaves the panic to the caller.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let out = std::panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get().saturating_sub(1)));
    out
}

/// Whether the current thread runs inside [`catch`].
pub(crate) fn is_catching() -> bool {
    CATCHING.with(Cell::get) > 0
}

/// The hook's part: keep the site for the catching code.
pub(crate) fn set_site(site: PanicSite) {
    SITE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            *s = Some(site);
        }
    });
}

/// The catching code's part: the site of the panic just caught, if a hook
/// of ours recorded it.
pub(crate) fn take_site() -> Option<PanicSite> {
    SITE.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.take()))
}

/// The text of a panic's payload (`panic!("…")` gives a `&str` or a
/// `String`).
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_gives_its_message_and_clears_the_catching_mark() {
        let err = catch(|| {
            assert!(is_catching());
            panic!("boom {}", 7)
        })
        .unwrap_err();
        assert_eq!(payload_message(&*err), "boom 7");
        assert!(!is_catching());
        let err = catch(|| std::panic::panic_any(5_u8)).unwrap_err();
        assert_eq!(payload_message(&*err), "Box<dyn Any>");
    }
}
