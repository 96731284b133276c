//! `cargo test` links this crate into an executable outside the VM, where
//! the erl_nif API the VM exports does not exist. The loader still binds
//! every referenced symbol at start-up, so the unit tests get these
//! stand-ins. No unit test calls into the VM: reaching one aborts.

macro_rules! not_in_unit_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[no_mangle]
            extern "C" fn $name() {
                eprintln!(concat!(stringify!($name), " called outside the VM"));
                std::process::abort();
            }
        )*
    };
}

/// Unit tests never run on a VM scheduler thread.
#[no_mangle]
extern "C" fn enif_thread_type() -> std::os::raw::c_int {
    0
}

not_in_unit_tests!(
    enif_alloc_env, enif_alloc_resource, enif_clear_env,
    enif_free_env, enif_get_atom, enif_get_atom_length,
    enif_get_double, enif_get_list_cell, enif_get_local_pid,
    enif_get_long, enif_get_map_value, enif_get_resource,
    enif_get_tuple, enif_get_uint, enif_get_ulong,
    enif_inspect_binary, enif_inspect_iolist_as_binary, enif_is_atom,
    enif_is_binary, enif_is_empty_list, enif_is_exception,
    enif_is_identical, enif_is_list, enif_is_map,
    enif_is_number, enif_keep_resource, enif_make_atom_len,
    enif_make_badarg, enif_make_binary, enif_make_copy,
    enif_make_list_from_array, enif_make_long, enif_make_map_put,
    enif_make_new_binary, enif_make_new_map, enif_make_resource,
    enif_make_tuple_from_array, enif_make_ulong, enif_map_iterator_create,
    enif_map_iterator_destroy, enif_map_iterator_get_pair, enif_map_iterator_next,
    enif_map_iterator_prev, enif_open_resource_type, enif_raise_exception, enif_release_resource,
    enif_schedule_nif, enif_send, enif_snprintf,
    enif_term_type,
);
