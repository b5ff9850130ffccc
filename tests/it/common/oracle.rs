//! The `oracle` binary as the tests run it: in a directory of the test's, with none of the
//! caller's `ORACLE_*` or `DATABASE_URL` variables, so that what a developer has exported (or a
//! `.env` in the checkout) cannot change what a test sees.

use std::path::Path;
use std::process::{Command, Output};

/// `oracle` in `dir`, with a clean environment as to its own variables; a test sets the ones it
/// is about.
pub fn command(dir: &Path) -> Command {
    clean(Command::new(env!("CARGO_BIN_EXE_oracle")), dir)
}

/// `sh script` in `dir`, with the same clean environment and this build's `oracle` first on
/// the `PATH`: a script that runs `oracle …` as a container would.
pub fn script(dir: &Path, script: &Path) -> Command {
    let binary = Path::new(env!("CARGO_BIN_EXE_oracle")).parent().unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut command = clean(Command::new("sh"), dir);
    command.arg(script).env(
        "PATH",
        std::env::join_paths(
            std::iter::once(binary.to_path_buf()).chain(std::env::split_paths(&path)),
        )
        .unwrap(),
    );
    command
}

fn clean(mut command: Command, dir: &Path) -> Command {
    command.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|key| key.starts_with("ORACLE_") || key == "DATABASE_URL")
        {
            command.env_remove(key);
        }
    }
    command
}

/// Runs `oracle args` in `dir` to its end.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    run_with_env(dir, args, &[])
}

/// The same with `env` set.
pub fn run_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("oracle runs")
}

/// Runs `oracle args` in a new temporary directory, off the async runtime's workers.
pub async fn run_blocking(args: Vec<String>) -> Output {
    run_blocking_with_env(args, Vec::new()).await
}

/// The same with `env` set.
pub async fn run_blocking_with_env(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("a temporary directory");
        command(dir.path())
            .args(args)
            .envs(env)
            .output()
            .expect("oracle runs")
    })
    .await
    .expect("the oracle process's thread")
}

/// What the process printed on standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the process printed on standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
