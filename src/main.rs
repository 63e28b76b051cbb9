//! The `nasbench` command: a thin shell over the library, one module per subcommand.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Rust's allocations go to mimalloc: ingest allocates and frees Arrow
/// buffers on every worker, and glibc's allocator hands much of that memory
/// back to the kernel only to fault it in again. On the only108-sized file,
/// alternating runs took 5.3-5.5 s against 5.7-6.4 s with glibc (page
/// faults 376,000-399,000 against 437,000). Transparent huge pages are off
/// (`no_thp`): zeroing 2 MiB pages that are soon purged cost more system
/// time than it saved. DuckDB's C++ keeps glibc's `malloc`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Ctrl-C: remove half-written temporaries (earlier outputs were never
    // touched: every output is renamed into place only when complete).
    let _ = ctrlc::set_handler(|| {
        nasbench::output::cleanup::remove_all();
        eprintln!("interrupted; temporary files removed, earlier outputs unchanged");
        // `_exit`, not `std::process::exit`: the latter runs C++ static
        // destructors while DuckDB's threads are still working, which
        // crashed some interrupted ingests (SIGSEGV instead of 130: 1 of 6
        // by hand, 2 of 4 runs of the interrupt test; 0 of 10 and 5 since).
        // SAFETY: ends the process at once; nothing is left to flush
        // (stderr is unbuffered, the temporaries are gone).
        unsafe { libc::_exit(130) }
    });
    let result = cli::run(args);
    // For benchmarks: the peak memory of the whole command.
    if std::env::var_os("NASBENCH_PEAK_RSS").is_some()
        && let Some(rss) = nasbench::peak_rss_bytes()
    {
        eprintln!("peak_rss_bytes={rss}");
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`nasbench ... | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e}");
            // Errors that show their source in their own message would
            // repeat it as a cause: print only causes that add something.
            let mut last = e.to_string();
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !last.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                last = text;
            }
            ExitCode::FAILURE
        }
    }
}
