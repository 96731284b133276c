fn main() {
    // The producer thread and librdkafka's threads run code from this
    // library. Erlang may unload a NIF library when its module is purged
    // (plugin upgrade or uninstall); if a thread were still exiting, dlclose
    // would unmap its code under it. `-z nodelete` makes dlclose keep the
    // library mapped for the life of the VM, which is safe whatever the
    // timing; stop/1 joins all threads anyway. A refcount alone could not
    // cover librdkafka's internal threads, which exit asynchronously.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
