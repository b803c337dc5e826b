//! The `tributary` binary: flags → config → app, and errors → exit codes
//! (0 success, 1 runtime failure, 2 bad usage or configuration).

// The future of `app::main` holds every command's; computing its layout
// in a release build goes past the default depth of 128.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: the pipeline makes many small,
/// short-lived strings per record, and glibc's malloc/free took a third of
/// the ingest profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Positions in mimalloc's `mi_option_e` (include/mimalloc.h, v2 and v3 alike);
// libmimalloc-sys does not export these two.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// No transparent huge pages for this process. mimalloc asks for them on its
/// arena (`MADV_HUGEPAGE`, before `main` runs), and a 2 MiB page stays
/// resident as long as one live object is on it: `run` into Kafka and
/// Cassandra peaked at 69-73 MiB with them, 50-54 MiB without, at the same
/// speed. The flag covers every mapping, librdkafka's heaps included, and
/// systems whose THP mode is `always`. Children inherit it; `bench` gives
/// the JVM tools it measures against the machine's setting back.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with an integer option and integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    // Give freed memory back to the OS at once and commit arena memory only
    // when touched: RSS is part of performance here (about 35 MiB instead of
    // 65 MiB for `run`, at the same speed).
    // SAFETY: plain option setters of the allocator, called before any thread
    // is started.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
    no_transparent_huge_pages();
    let cli = tributary::cli::Cli::parse();
    if prints_and_ends(&cli.command) {
        quiet_on_closed_pipe();
    }
    tributary::telemetry::init(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tributary")
        // SQLite calls run on the blocking pool; a handful of threads keeps
        // per-thread allocator caches (and so RSS) small.
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(tributary::app::main(cli));
    // Every command's own peak memory, for `-v`: this process's high-water
    // mark since exec, not its parent's.
    if let Some(bytes) = tributary::pipeline::stats::peak_rss_bytes() {
        tracing::debug!(peak_rss_bytes = bytes, "peak memory {} MiB", bytes >> 20);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The commands that read, print and end: when the reader of their output
/// goes away (`tributary show | head`), they end there, quietly, as Unix
/// filters do. The others keep SIGPIPE ignored (Rust's default): a pipeline
/// or a server must not die of a peer that went away, and sees the error.
fn prints_and_ends(command: &tributary::cli::Command) -> bool {
    use tributary::cli::Command;
    match command {
        Command::Count(_)
        | Command::Status(_)
        | Command::Show(_)
        | Command::Preview(_)
        | Command::Verify(_)
        | Command::Dlq(_)
        | Command::Config(_)
        | Command::Jobs(_)
        | Command::Export(_)
        | Command::Healthcheck(_) => true,
        Command::Run(_)
        | Command::Ingest(_)
        | Command::Process(_)
        | Command::MockApi(_)
        | Command::Serve(_)
        | Command::Bench(_) => false,
    }
}

/// SIGPIPE back to its default: a write to a closed pipe ends the process
/// (status 141 in a shell) instead of failing (and panicking in `println!`).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: sets a signal's disposition to the default, before any thread
    // is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
