//! The transport under the Swarm: TCP, then — on a private network — the pre-shared key
//! handshake (libp2p pnet, the go-ipfs/Kubo `swarm.key` format), then noise and yamux.
//!
//! The pre-shared key keeps anyone without it off the transport altogether: without the key
//! nothing after the first 24 bytes (the nonce) is readable, so not even noise starts. It is
//! defence in depth; membership still decides whose signatures count.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use either::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{KeyParseError, PnetConfig, PreSharedKey};
use libp2p::{PeerId, Transport, noise, tcp, yamux};
use zeroize::Zeroizing;

/// A connection that has not finished TCP + pnet + noise + yamux by then is dropped, so a peer
/// that stalls a handshake (say, one without the key) cannot hold it open.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a swarm key file could not be used. Each variant renders as one line naming the file;
/// `Read` and `Write` show their I/O error in the message (so it is not also a `source()`).
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    #[error("cannot read swarm key file {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "swarm key file {path} is not a /key/swarm/psk/1.0.0/ key: {reason} \
         (create one with `oracle keygen --psk PATH`)"
    )]
    Invalid { path: PathBuf, reason: &'static str },
    #[error("swarm key file {path} already exists (pass --force to replace it)")]
    AlreadyExists { path: PathBuf },
    #[error("cannot write swarm key file {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
}

/// TCP, the pre-shared key handshake when `psk` is set, noise with `keypair`, yamux.
pub fn build(
    keypair: &Keypair,
    psk: Option<PreSharedKey>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    // pnet wraps the raw socket: everything above it, multistream-select included, is encrypted.
    let tcp = match psk {
        Some(psk) => {
            Either::Left(tcp.and_then(move |socket, _| PnetConfig::new(psk).handshake(socket)))
        }
        None => Either::Right(tcp),
    };
    Ok(tcp
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(keypair)?)
        .multiplex(yamux::Config::default())
        .timeout(UPGRADE_TIMEOUT)
        .boxed())
}

/// Reads a swarm key file: `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex characters.
pub fn read_psk(path: &Path) -> Result<PreSharedKey, PskError> {
    let text = fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|error| PskError::Read {
            path: path.to_owned(),
            error,
        })?;
    text.trim_start()
        .parse::<PreSharedKey>()
        .map_err(|err| PskError::Invalid {
            path: path.to_owned(),
            reason: match err {
                KeyParseError::InvalidKeyFile => {
                    "expected three lines: /key/swarm/psk/1.0.0/, /base16/, 64 hex characters"
                }
                KeyParseError::InvalidKeyType => "the first line is not /key/swarm/psk/1.0.0/",
                KeyParseError::InvalidKeyEncoding => "the second line is not /base16/",
                KeyParseError::InvalidKeyLength => "the key is not 64 hex characters",
                KeyParseError::InvalidKeyChar(_) => "the key is not hex",
            },
        })
}

/// A fresh random swarm key.
pub fn generate_psk() -> PreSharedKey {
    PreSharedKey::new(rand::random())
}

/// Writes `psk` to `path` with mode 0600, creating the parent directory; an existing file is
/// replaced only with `overwrite`.
pub fn write_psk(path: &Path, psk: PreSharedKey, overwrite: bool) -> Result<(), PskError> {
    let text = Zeroizing::new(psk.to_key_file());
    crate::identity::write_private_file(path, text.trim_end().as_bytes(), overwrite).map_err(
        |error| {
            if error.kind() == io::ErrorKind::AlreadyExists && !overwrite {
                PskError::AlreadyExists {
                    path: path.to_owned(),
                }
            } else {
                PskError::Write {
                    path: path.to_owned(),
                    error,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/key/swarm/psk/1.0.0/\n/base16/\n\
                       6189c5cf0b87fb800c1a9feeda73c6ab5e998db48fb9e6a978575c770ceef683\n";

    #[test]
    fn reads_the_kubo_format_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.key");
        fs::write(&path, KEY).unwrap();
        let psk = read_psk(&path).unwrap();
        assert_eq!(psk.to_key_file(), KEY);

        for (text, expected) in [
            ("", "three lines"),
            ("/key/swarm/psk/2.0.0/\n/base16/\n00\n", "first line"),
            ("/key/swarm/psk/1.0.0/\n/base64/\nAA==\n", "second line"),
            ("/key/swarm/psk/1.0.0/\n/base16/\nabcd\n", "64 hex"),
            (&KEY.replace("61", "zz"), "not hex"),
        ] {
            fs::write(&path, text).unwrap();
            let err = read_psk(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains("swarm.key"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        let missing = read_psk(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(missing, PskError::Read { .. }), "{missing}");
    }

    #[test]
    fn writes_a_private_file_that_reads_back_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net/swarm.key");
        let psk = generate_psk();
        write_psk(&path, psk, false).unwrap();
        assert_eq!(read_psk(&path).unwrap(), psk);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = generate_psk();
        assert_ne!(other, psk, "keys are random");
        let err = write_psk(&path, other, false).unwrap_err();
        assert!(matches!(err, PskError::AlreadyExists { .. }), "{err}");
        assert_eq!(read_psk(&path).unwrap(), psk, "left untouched");
        write_psk(&path, other, true).unwrap();
        assert_eq!(read_psk(&path).unwrap(), other);
    }
}
