//! Log lines through `log` + `fern`: `TIMESTAMP LEVEL NODE TARGET: message` on stderr and,
//! optionally, appended to a file.
//!
//! Dependencies that log through `tracing` (libp2p, sqlx, hyper) reach the same lines: the
//! `tracing` crate's `log` feature, turned on in Cargo.toml, makes each of their events a `log`
//! record, since no tracing subscriber is ever installed.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::SystemTime;

use log::LevelFilter;

/// Dependencies that flood the log at debug level; held at `info` unless named explicitly.
const CHATTY_TARGETS: [&str; 7] = [
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "reqwest",
    "multistream_select",
    "yamux",
];

/// A level for everything, optionally followed by per-target levels:
/// `info`, `debug`, `info,libp2p_gossipsub=debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    pub default: LevelFilter,
    pub targets: Vec<(String, LevelFilter)>,
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse_level = |level: &str| {
            LevelFilter::from_str(level.trim()).map_err(|_| {
                format!("unknown log level {level:?} (use off, error, warn, info, debug or trace)")
            })
        };
        let mut parts = text.split(',');
        let default = parse_level(parts.next().unwrap_or_default())?;
        let targets = parts
            .map(|part| match part.split_once('=') {
                Some((target, level)) if !target.trim().is_empty() => {
                    Ok((target.trim().to_owned(), parse_level(level)?))
                }
                _ => Err(format!("expected TARGET=LEVEL, got {part:?}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { default, targets })
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.default.as_str().to_lowercase())?;
        for (target, level) in &self.targets {
            write!(f, ",{target}={}", level.as_str().to_lowercase())?;
        }
        Ok(())
    }
}

/// How each line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-21T19:22:35.141Z INFO  node0 target: message`
    #[default]
    Text,
    /// `{"ts":"…","level":"INFO","node":"node0","target":"…","msg":"…"}`
    Json,
}

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub filter: LogFilter,
    pub format: LogFormat,
    /// Also append every line to this file.
    pub file: Option<PathBuf>,
    /// Shown on every line; `-` until a node name is known.
    pub node: Option<String>,
}

/// Installs the global logger. Call once, before anything logs.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let node = settings.node.clone().unwrap_or_else(|| "-".to_owned());
    let format = settings.format;
    let mut dispatch = fern::Dispatch::new()
        .format(move |out, message, record| {
            let ts = humantime::format_rfc3339_millis(SystemTime::now());
            match format {
                LogFormat::Text => out.finish(format_args!(
                    "{ts} {:<5} {node} {}: {message}",
                    record.level(),
                    record.target(),
                )),
                LogFormat::Json => out.finish(format_args!(
                    "{}",
                    json_line(
                        &ts.to_string(),
                        record.level(),
                        &node,
                        record.target(),
                        message
                    )
                )),
            }
        })
        .level(settings.filter.default);
    for target in CHATTY_TARGETS {
        dispatch = dispatch.level_for(target, settings.filter.default.min(LevelFilter::Info));
    }
    // PostgreSQL notices such as "relation already exists, skipping" are not news.
    dispatch = dispatch.level_for(
        "sqlx::postgres::notice",
        settings.filter.default.min(LevelFilter::Warn),
    );
    // Kademlia warns "Failed to trigger bootstrap: No known peers" whenever a node (typically the
    // first bootstrap node) is alone; that is expected here, and the node logs its peers itself.
    dispatch = dispatch.level_for(
        "libp2p_kad::behaviour",
        settings.filter.default.min(LevelFilter::Error),
    );
    for (target, level) in &settings.filter.targets {
        dispatch = dispatch.level_for(target.clone(), *level);
    }
    dispatch = dispatch.chain(Box::new(IgnoreErrors(std::io::stderr())) as Box<dyn Write + Send>);
    if let Some(path) = &settings.file {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| {
                anyhow::anyhow!("cannot create log folder {}: {err}", dir.display())
            })?;
        }
        let file = fern::log_file(path)
            .map_err(|err| anyhow::anyhow!("cannot open log file {}: {err}", path.display()))?;
        dispatch = dispatch.chain(Box::new(IgnoreErrors(file)) as Box<dyn Write + Send>);
    }
    dispatch
        .apply()
        .map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}

fn json_line(
    ts: &str,
    level: log::Level,
    node: &str,
    target: &str,
    message: &fmt::Arguments<'_>,
) -> String {
    serde_json::json!({
        "ts": ts,
        "level": level.as_str(),
        "node": node,
        "target": target,
        "msg": message.to_string(),
    })
    .to_string()
}

/// An error and its causes as one log line: `error: cause: cause`, each cause once.
///
/// Two habits of dependencies are undone: a cause whose text its parent already shows (an error
/// that both prints its source and returns it from `source()`) is left out, and so is a level
/// with no text at all (libp2p's `TransportError::Other`). Line breaks become spaces.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut shown = String::new();
    let mut next = Some(err);
    while let Some(err) = next {
        next = err.source();
        let text = err.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || (!shown.is_empty() && shown.contains(&text)) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        shown = text;
    }
    line
}

/// A log destination that never fails: fern panics when a write fails and stderr is gone too,
/// and a node must not die because its terminal closed or its disk filled up. Lines are lost
/// instead.
struct IgnoreErrors<W>(W);

impl<W: Write> Write for IgnoreErrors<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Log lines that peers' messages trigger are printed at most this often (with a count of the
/// ones left out), so a misbehaving peer cannot flood the log.
const LOG_LINE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Lets a log line through at most once per 10 s.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(lines left out since the last one)` when a line may be printed now.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_LINE_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// ` (N similar lines left out)`, or nothing.
pub fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} similar lines left out)")
    }
}

/// Keeps error messages one short line even when a source sends a megabyte of garbage.
pub fn truncate_for_display(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_levels_and_target_overrides() {
        let filter: LogFilter = "debug".parse().unwrap();
        assert_eq!(filter.default, LevelFilter::Debug);
        assert!(filter.targets.is_empty());
        let filter: LogFilter = "WARN, libp2p_gossipsub=trace ,price_oracle=debug"
            .parse()
            .unwrap();
        assert_eq!(filter.default, LevelFilter::Warn);
        assert_eq!(
            filter.targets,
            vec![
                ("libp2p_gossipsub".to_owned(), LevelFilter::Trace),
                ("price_oracle".to_owned(), LevelFilter::Debug)
            ]
        );
        assert_eq!(
            filter.to_string(),
            "warn,libp2p_gossipsub=trace,price_oracle=debug"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let line = json_line(
            "2026-11-21T19:22:35.141Z",
            log::Level::Warn,
            "node0",
            "price_oracle::node",
            &format_args!("a \"quoted\"\nmessage"),
        );
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["node"], "node0");
        assert_eq!(value["msg"], "a \"quoted\"\nmessage");
    }

    #[test]
    fn failing_destinations_swallow_errors() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let mut lossy = IgnoreErrors(Broken);
        assert_eq!(lossy.write(b"line\n").unwrap(), 5);
        lossy.flush().unwrap();
    }

    #[test]
    fn rejects_unknown_levels_with_a_hint() {
        for bad in ["", "loud", "info,x", "info,=debug", "info,x=loud"] {
            let err = bad.parse::<LogFilter>().unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        assert!("loud".parse::<LogFilter>().unwrap_err().contains("trace"));
    }

    #[test]
    fn one_line_shows_each_cause_once() {
        /// Prints its source and returns it too, as dotenvy's and sqlx's errors do.
        #[derive(Debug)]
        struct Echo(std::io::Error);
        impl fmt::Display for Echo {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl std::error::Error for Echo {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::from_raw_os_error(21);
        let err = anyhow::Error::new(Echo(io)).context("cannot parse .env-db");
        assert_eq!(
            one_line(err.as_ref()),
            "cannot parse .env-db: Is a directory (os error 21)"
        );
        assert_eq!(
            format!("{err:#}"),
            "cannot parse .env-db: Is a directory (os error 21): Is a directory (os error 21)",
            "what anyhow alone prints"
        );

        // A level without text (libp2p's TransportError::Other) is skipped, line breaks go.
        #[derive(Debug)]
        struct Silent(std::io::Error);
        impl fmt::Display for Silent {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Ok(())
            }
        }
        impl std::error::Error for Silent {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::from_raw_os_error(98);
        let err = anyhow::Error::new(Silent(io)).context("cannot listen\non x");
        assert_eq!(
            one_line(err.as_ref()),
            "cannot listen on x: Address already in use (os error 98)"
        );
    }
}
