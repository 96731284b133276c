//! A bound on the work one `emit` call does on a normal scheduler.
//!
//! A hook field may be any term another plugin put there: a list of two
//! million elements in a clientid, a User-Property list as long as a
//! 256 MB packet allows. Walking such a term on a normal scheduler holds
//! it for as long as the walk takes. So the walkers spend from a budget
//! per call (a unit per list cell, tuple element or map entry, and per 256
//! bytes of a binary written as text); once it is spent they give up, and
//! the call asks to be run again on a dirty scheduler, which has no budget.
//! The payload has its own limit (`DIRTY_PAYLOAD_BYTES`) and is not counted.

use std::cell::Cell;

/// Units one call may spend on a normal scheduler. An event EMQX makes
/// spends a few dozen; hostile_SUITE measures the longest hold it allows.
pub const NORMAL_SCHEDULER_UNITS: u64 = 2_000;

thread_local! {
    /// Units left to this call; below zero once it ran out. One cell: in a
    /// `dlopen`ed library each thread-local access is a call.
    static LEFT: Cell<i64> = const { Cell::new(i64::MAX) };
}

/// Runs `body` with `units` to spend (`None`: unbounded, on a dirty
/// scheduler). `body` checks `spent_out` itself, before it counts the
/// event.
pub fn with_budget<T>(units: Option<u64>, body: impl FnOnce() -> T) -> T {
    LEFT.with(|left| left.set(units.map_or(i64::MAX, |u| u.min(i64::MAX as u64) as i64)));
    let result = body();
    LEFT.with(|left| left.set(i64::MAX));
    result
}

/// Spends `units`; false once the budget is gone, and the walker stops.
#[inline]
pub fn spend(units: u64) -> bool {
    if units == 0 {
        // The usual short text: no thread-local access at all.
        return true;
    }
    LEFT.with(|left| {
        let rest = left.get().saturating_sub(units.min(i64::MAX as u64) as i64);
        left.set(rest);
        rest >= 0
    })
}

/// Whether this call's budget ran out.
pub fn spent_out() -> bool {
    LEFT.with(Cell::get) < 0
}

/// What writing `bytes` of a binary as text costs.
#[inline]
pub fn text_units(bytes: usize) -> u64 {
    (bytes >> 8) as u64
}
