//! The process's allocator: mimalloc, with freed pages kept mapped.
//!
//! The benchmarks include this same file (`#[path]`), so that what they measure beside
//! a peer runs on the allocator settings of `medlake` itself.

/// mimalloc, not the system allocator. The server's indexes are millions of small
/// allocations, and every request makes and frees many more; with 4M resources loaded,
/// glibc's malloc spent over a third of the server's CPU under a write load in its own
/// bookkeeping (consolidating and unlinking free chunks), and transactions ran 30%
/// slower than with 1.3M. Bulk ingest allocates a parsed tree per record, too.
///
/// mimalloc's own default for freed memory is then changed: see [`keep_freed_pages`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc option `purge_decommits` (its index in `mi_option_t`, in mimalloc 2 and 3).
const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Freed memory goes back to the kernel as `MADV_FREE` (reclaimed only when memory is
/// short), not decommitted with `MADV_DONTNEED`, which is mimalloc's default. The cost:
/// `top`'s resident size counts such pages until the kernel takes them back.
///
/// Queries and view builds allocate and free large Arrow and Parquet buffers many times
/// a second. With the default, mimalloc gives such memory back within milliseconds, and
/// the next buffer faults every page in again, each zeroed by the kernel: rebuilding
/// `views.observation` took 811,000 page faults, the kernel's page clearing was the
/// largest item of its profile, and three window and aggregate queries took 130,000 to
/// 180,000 faults. Keeping the pages mapped until the kernel wants them took those to
/// 8,000 to 42,000 faults and 8 to 26% off their CPU time, and those queries from 1.2 to
/// 1.5 s down to 0.8 to 0.9 s (benches/README.md, 2026-12-02). `MIMALLOC_PURGE_DECOMMITS`
/// in the environment still decides, as mimalloc documents.
pub fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
        // SAFETY: sets one option of the allocator; called first thing in `main`, before
        // any other thread exists (mimalloc's options are not synchronised).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) };
    }
}
