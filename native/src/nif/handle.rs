//! The handle Erlang holds on a bridge: a NIF resource that owns one
//! `Bridge` and drops it when the VM collects the last reference to it.
//!
//! The resource type is opened once, at load, and its pointer kept. Looking
//! up a rustler resource hashes the Rust type's `TypeId` in a registry on
//! every call (a measured cost: `fast/mod.rs`).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use rustler::sys::{self, ErlNifEnv, ErlNifResourceFlags, ErlNifResourceType};
use rustler::{Env, Term};

use crate::bridge::Bridge;

static BRIDGE_TYPE: AtomicPtr<ErlNifResourceType> = AtomicPtr::new(ptr::null_mut());

/// The resource type's name is unique to this copy of the library in the
/// VM (it holds the address of `BRIDGE_TYPE`). A reload from the same file
/// reuses the loaded copy, takes its own type over, and a running bridge
/// stays reachable from the new module code. Another copy (a new plugin
/// version installed over the old) has its own statics and allocator, so it
/// opens a type of its own and leaves the old bridges to the old copy's
/// destructor (the library is never unmapped: `-z nodelete`).
fn type_name() -> std::ffi::CString {
    let name = format!("kafka_bridge_{:x}", &BRIDGE_TYPE as *const _ as usize);
    std::ffi::CString::new(name).unwrap_or_default()
}

/// Called from the load and upgrade callbacks: takes over this copy's type
/// when an older module instance opened it, else creates it. At load, the
/// older instance may have been purged while a bridge it started lives on
/// (a `code:purge` then `code:load_file`); the type outlives it with its
/// resources, and taking it over keeps that bridge reachable.
pub fn take_over_type(env: Env) -> bool {
    open(env, ErlNifResourceFlags::ERL_NIF_RT_TAKEOVER) || open(env, ErlNifResourceFlags::ERL_NIF_RT_CREATE)
}

fn open(env: Env, flags: ErlNifResourceFlags) -> bool {
    let mut tried = flags;
    let name = type_name();
    // SAFETY: called during load or upgrade, with that call's environment;
    // ERTS copies the name into an atom.
    let resource_type = unsafe {
        sys::enif_open_resource_type(env.as_c_arg(), ptr::null(), name.as_ptr(), Some(destructor), flags, &mut tried)
    } as *mut ErlNifResourceType;
    if resource_type.is_null() {
        return false;
    }
    let previous = BRIDGE_TYPE.swap(resource_type, Ordering::AcqRel);
    if previous != resource_type {
        if !previous.is_null() {
            ORPHANED_TYPES.lock().unwrap_or_else(|e| e.into_inner()).push(previous as usize);
        }
        // SAFETY: allocates one resource of the type, never released: it
        // keeps the type itself allocated for the life of the VM, so a
        // pointer kept in ORPHANED_TYPES can never match another type
        // allocated at the same address. The destructor never sees it.
        unsafe { sys::enif_alloc_resource(resource_type, 1) };
    }
    true
}

/// Types this copy of the library opened for module instances that were
/// purged since. A purge unlinks the type from ERTS's registry, so the next
/// load cannot take it over; bridges started under it still live (the
/// library is never unmapped) and are found here instead.
static ORPHANED_TYPES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn get_resource(term: Term, resource_type: *const ErlNifResourceType) -> Option<*const c_void> {
    let mut object: *const c_void = ptr::null();
    // SAFETY: enif_get_resource checks that `term` is a resource of this
    // type (the type pointer is only compared).
    let found = unsafe { sys::enif_get_resource(term.get_env().as_c_arg(), term.as_c_arg(), resource_type, &mut object) };
    (found != 0).then_some(object)
}

/// Runs when the VM frees the resource, on whatever scheduler collected the
/// last reference: a bridge collected without a stop still stops and joins
/// its threads (`Bridge`'s `Drop`), but on a thread of its own, since a
/// join can wait for a flush.
unsafe extern "C" fn destructor(_env: *mut ErlNifEnv, object: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the VM calls this once, after the last reference is gone;
        // the Bridge is moved out and the VM frees only the bytes.
        let bridge = ptr::read(aligned(object));
        if !bridge.has_producer() {
            // Stopped: nothing to join, nothing that waits.
            return drop(bridge);
        }
        // When no thread can be had, spawn drops the closure, and the
        // bridge with it, right here. The library is never unmapped
        // (`-z nodelete`), so the thread may outlive the module.
        let _ = std::thread::Builder::new().name("kafka_bridge_drop".into()).spawn(move || drop(bridge));
    }));
}

// The handle is used from any scheduler and dropped on a thread of its own.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Bridge>()
};

/// The bridge's place inside the resource's memory, which the VM only
/// promises to align to 8 bytes (the allocation leaves room to align).
fn aligned(object: *const c_void) -> *mut Bridge {
    let align = std::mem::align_of::<Bridge>();
    ((object as usize).next_multiple_of(align)) as *mut Bridge
}

/// A new handle term that owns `bridge`.
pub fn new_handle(env: Env<'_>, bridge: Bridge) -> Term<'_> {
    let size = std::mem::size_of::<Bridge>() + std::mem::align_of::<Bridge>() - 1;
    // SAFETY: the type was opened at load (the library does not load
    // otherwise); the allocation has room for an aligned Bridge, written
    // before the term exists; after enif_release_resource the term holds
    // the only reference, and the destructor drops the Bridge.
    unsafe {
        let object = sys::enif_alloc_resource(BRIDGE_TYPE.load(Ordering::Acquire), size);
        aligned(object).write(bridge);
        let term = sys::enif_make_resource(env.as_c_arg(), object);
        sys::enif_release_resource(object);
        Term::new(env, term)
    }
}

/// The bridge behind a handle term, for as long as the term lives.
pub fn bridge<'a>(term: Term<'a>) -> Option<&'a Bridge> {
    let object = get_resource(term, BRIDGE_TYPE.load(Ordering::Acquire)).or_else(|| {
        let orphaned = ORPHANED_TYPES.lock().unwrap_or_else(|e| e.into_inner());
        orphaned.iter().find_map(|t| get_resource(term, *t as *const ErlNifResourceType))
    })?;
    // SAFETY: the term keeps the resource, and so the Bridge, alive for 'a.
    Some(unsafe { &*aligned(object) })
}
