//! Handing freed heap memory back to the system after a model is replaced.
//!
//! A reload builds the new model on a blocking thread while the old one keeps serving; when
//! the old one is dropped, glibc keeps its pages in that thread's arena for reuse, and the
//! next reload, on whichever blocking thread runs it, may allocate from another arena. Without
//! a trim the resident size grew with every reload of a big zone set (issue 9, item 8: 100 k
//! GSLB names from 573 to 1094 MiB over 10 reloads). `malloc_trim(0)` walks every arena and
//! returns their free pages; it costs milliseconds and runs off the runtime's worker threads.

/// Returns free heap memory of every allocator arena to the system (glibc's `malloc_trim`;
/// nothing with another C library).
pub(super) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own free lists,
    // under the allocator's locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
