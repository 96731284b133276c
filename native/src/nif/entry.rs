//! The library's `nif_init`: what `rustler::init!` generates, plus the
//! `upgrade` callback that `rustler::init!` cannot declare.
//!
//! EMQX reloads every beam of a plugin on each start (`code:purge` then
//! `code:load_file`), also when the module is still loaded from the last
//! start. ERTS then calls the new library's `upgrade`, not `load`; without
//! one the load fails ("Upgrade not supported by this NIF library") and the
//! plugin cannot be started again in the same VM. See nif/handle.rs for what an
//! upgrade does with the bridge resource type.
//!
//! This uses rustler's `codegen_runtime`, which is what `rustler::init!`
//! expands to and not a stable API: rustler is pinned exactly in
//! Cargo.toml, and an upgrade of it must compare this file with the
//! macro's output (rustler_codegen's init.rs).

use std::ffi::c_void;
use std::sync::OnceLock;

use rustler::codegen_runtime::{internal_write_symbols, inventory, ErlNifEntry, ErlNifEnv, ErlNifTerm};
use rustler::{Env, Nif};

/// The entry ERTS reads; built once, as ERTS may call `nif_init` again
/// (every load of the module from this same library).
struct Entry(ErlNifEntry);

// SAFETY: the entry only holds pointers to 'static data (names, the leaked
// function table) and is never written after it is built.
unsafe impl Sync for Entry {}
unsafe impl Send for Entry {}

static ENTRY: OnceLock<Entry> = OnceLock::new();

#[no_mangle]
extern "C" fn nif_init() -> *const ErlNifEntry {
    // SAFETY: fills rustler's table of erl_nif functions from the VM, as the
    // code rustler::init! generates does before anything else.
    unsafe { internal_write_symbols() };
    &ENTRY.get_or_init(build_entry).0
}

fn build_entry() -> Entry {
    let functions: &'static [_] = inventory::iter::<Nif>().map(Nif::get_def).collect::<Vec<_>>().leak();
    let mut entry = ErlNifEntry::new(c"emqx_plugin_kafka_bridge_nif", functions, load);
    entry.upgrade = Some(upgrade);
    Entry(entry)
}

/// First load of the module in this VM.
unsafe extern "C" fn load(env: *mut ErlNifEnv, _priv_data: *mut *mut c_void, _load_info: ErlNifTerm) -> i32 {
    with_env(env, crate::nif::handle::take_over_type)
}

/// A load of the module while an older instance of it holds a NIF library
/// (this one or another version's): bridges that older code started stay
/// reachable, and nothing is started or stopped here.
unsafe extern "C" fn upgrade(
    env: *mut ErlNifEnv,
    _priv_data: *mut *mut c_void,
    _old_priv_data: *mut *mut c_void,
    _load_info: ErlNifTerm,
) -> i32 {
    with_env(env, crate::nif::handle::take_over_type)
}

/// 0 (loaded) when `open` succeeds; never lets a panic reach ERTS.
unsafe fn with_env(env: *mut ErlNifEnv, open: fn(Env) -> bool) -> i32 {
    let env = Env::new_init_env(&env, env);
    match std::panic::catch_unwind(|| open(env)) {
        Ok(true) => 0,
        _ => 1,
    }
}
