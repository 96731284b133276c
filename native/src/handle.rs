//! The handle Erlang holds on a bridge: a NIF resource that owns one
//! `Bridge` and drops it when the VM collects the last reference to it.
//!
//! The resource type is opened once, at load, and its pointer kept. Looking
//! up a rustler resource hashes the Rust type's `TypeId` in a registry on
//! every call, ~3% of a 100 B hook.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use rustler::sys::{self, ErlNifEnv, ErlNifResourceFlags, ErlNifResourceType};
use rustler::{Env, Term};

use crate::bridge::Bridge;

static BRIDGE_TYPE: AtomicPtr<ErlNifResourceType> = AtomicPtr::new(ptr::null_mut());

/// Opens the resource type; called from the library's load callback.
pub fn open_type(env: Env) -> bool {
    let mut tried = ErlNifResourceFlags::ERL_NIF_RT_CREATE;
    // SAFETY: called during load, with the load environment.
    let resource_type = unsafe {
        sys::enif_open_resource_type(
            env.as_c_arg(),
            ptr::null(),
            c"kafka_bridge".as_ptr(),
            Some(destructor),
            ErlNifResourceFlags::ERL_NIF_RT_CREATE,
            &mut tried,
        )
    };
    BRIDGE_TYPE.store(resource_type as *mut _, Ordering::Release);
    !resource_type.is_null()
}

/// Runs when the VM frees the resource: a bridge collected without a stop
/// still stops and joins its threads (`Bridge`'s `Drop`).
unsafe extern "C" fn destructor(_env: *mut ErlNifEnv, object: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| ptr::drop_in_place(aligned(object))));
}

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
    let mut object: *const c_void = ptr::null();
    // SAFETY: enif_get_resource checks that `term` is a resource of this
    // type; the term keeps the resource, and so the Bridge, alive for 'a.
    let found = unsafe {
        sys::enif_get_resource(term.get_env().as_c_arg(), term.as_c_arg(), BRIDGE_TYPE.load(Ordering::Acquire), &mut object)
    };
    (found != 0).then(|| unsafe { &*aligned(object) })
}
