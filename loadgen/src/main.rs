//! `loadgen`: loads a chat broker over loopback and reports throughput,
//! latency and delivery integrity. See `loadgen --help`.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = loadgen::Args::parse();
    let settings = match args.settings() {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("loadgen: {msg}");
            return ExitCode::from(2);
        }
    };
    let json = settings.json;
    let report = match loadgen::run(settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let text = if json {
        report.to_json() + "\n"
    } else if loadgen::console::stdout_is_stderr() {
        // The header went to this same screen or file before the progress.
        report.results()
    } else {
        report.summary()
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::from(2);
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
