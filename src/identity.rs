//! A node's identity: one secp256k1 secret that is at once its Ethereum signer (address, EIP-191
//! signatures) and its libp2p identity (PeerId, noise handshakes, gossipsub message signing).
//!
//! On disk the secret is `<key-dir>/<name>.priv`: 64 lowercase hex characters, mode 0600 — the
//! format of the original system, so its key files keep working.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;
use libp2p::PeerId;
use libp2p::identity::{Keypair, secp256k1};
use zeroize::Zeroizing;

/// Why a key file could not be used. Each variant renders as one line that names the file and,
/// for `Read` and `Write`, the I/O error: shown in the message, so not also a `source()`, which
/// would print it twice in an error chain.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path} not found (create it with `oracle keygen --name NAME`)")]
    NotFound { path: PathBuf },
    #[error("key file {path} already exists (pass --force to replace it)")]
    AlreadyExists { path: PathBuf },
    #[error("cannot read key file {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("cannot write key file {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
    #[error("key file {path} holds {found} characters; expected 64 hex characters (32 bytes)")]
    WrongLength { path: PathBuf, found: usize },
    #[error("key file {path} is not hex: {detail}")]
    NotHex { path: PathBuf, detail: String },
    #[error("key file {path} holds no valid secp256k1 secret (zero or not below the curve order)")]
    OutOfRange { path: PathBuf },
    #[error(
        "invalid node name {name:?}: use letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    BadName { name: String },
}

/// The node's key and everything derived from it.
///
/// `Debug` and `Display` show only public parts; the secret never reaches a log.
#[derive(Clone)]
pub struct Identity {
    signer: PrivateKeySigner,
    keypair: Keypair,
}

impl Identity {
    /// Builds an identity from the 32-byte secret.
    ///
    /// Fails when the bytes are zero or not below the secp256k1 group order.
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, InvalidSecret> {
        let signer =
            PrivateKeySigner::from_bytes(&B256::from(*secret)).map_err(|_| InvalidSecret)?;
        let mut copy = Zeroizing::new(*secret);
        let secret_key =
            secp256k1::SecretKey::try_from_bytes(&mut copy[..]).map_err(|_| InvalidSecret)?;
        let keypair = Keypair::from(secp256k1::Keypair::from(secret_key));
        Ok(Self { signer, keypair })
    }

    /// A fresh random identity.
    pub fn generate() -> Self {
        let keypair = secp256k1::Keypair::generate();
        let secret = Zeroizing::new(keypair.secret().to_bytes());
        // A libp2p secp256k1 secret is by construction a valid k256 scalar.
        match Self::from_secret(&secret) {
            Ok(identity) => identity,
            Err(InvalidSecret) => unreachable!("libp2p generated an invalid secp256k1 secret"),
        }
    }

    /// The Ethereum address (shown EIP-55 checksummed by `Display`).
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The libp2p peer id (`16Uiu2…` for secp256k1 keys).
    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// The Ethereum signer, for EIP-191 price signatures.
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }

    /// The libp2p keypair, for the swarm.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    fn secret_hex(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.signer.to_bytes().0);
        Zeroizing::new(alloy_primitives::hex::encode(&bytes[..]))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("address", &self.address())
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

/// The Ethereum address of the key behind a secp256k1 PeerId.
///
/// Such PeerIds embed the public key itself (an identity multihash), so a gossip message's
/// libp2p source tells which address published it. `None` for other key types.
pub fn address_of_peer(peer: &PeerId) -> Option<Address> {
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    const IDENTITY_MULTIHASH: u64 = 0x00;
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let public = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let uncompressed = public.try_into_secp256k1().ok()?.to_bytes_uncompressed();
    // An address is the last 20 bytes of keccak256 of the 64-byte key (without the 0x04 tag).
    Some(Address::from_raw_public_key(&uncompressed[1..]))
}

/// The 32 bytes are zero or not below the secp256k1 group order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid secp256k1 secret key")]
pub struct InvalidSecret;

/// Where a named node's key lives: `<key_dir>/<name>.priv`.
///
/// The name must be a plain file name so that `--name ../x` cannot point outside `key_dir`.
pub fn key_path(key_dir: &Path, name: &str) -> Result<PathBuf, KeyError> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(KeyError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(key_dir.join(format!("{name}.priv")))
}

/// Reads the key file at `path`.
///
/// Accepts 64 hex characters (either case, optional `0x`, surrounding whitespace). A file that
/// others may read is used, with a warning: refusing would turn a permissions slip into an outage.
pub fn load(path: &Path) -> Result<Identity, KeyError> {
    let contents = match fs::read_to_string(path) {
        Ok(contents) => Zeroizing::new(contents),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound {
                path: path.to_owned(),
            });
        }
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            return Err(KeyError::NotHex {
                path: path.to_owned(),
                detail: "the file is not text".to_owned(),
            });
        }
        Err(error) => {
            return Err(KeyError::Read {
                path: path.to_owned(),
                error,
            });
        }
    };
    let secret = parse_secret(path, &contents)?;
    let identity =
        Identity::from_secret(&secret).map_err(|InvalidSecret| KeyError::OutOfRange {
            path: path.to_owned(),
        })?;
    warn_if_readable_by_others(path);
    Ok(identity)
}

/// Loads the key at `path`, creating a fresh one there first when none exists.
///
/// Returns the identity and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(Identity, bool), KeyError> {
    match load(path) {
        Ok(identity) => Ok((identity, false)),
        Err(KeyError::NotFound { .. }) => {
            let identity = Identity::generate();
            match write(path, &identity, false) {
                Ok(()) => Ok((identity, true)),
                // Another process created it between our read and write: use theirs.
                Err(KeyError::AlreadyExists { .. }) => load(path).map(|identity| (identity, false)),
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

/// Writes `identity`'s secret to `path` with mode 0600, creating the parent directory.
///
/// Without `overwrite` an existing file is never touched. With it, the new key is written to a
/// temporary file and renamed over the old one, so a crash never leaves a half-written key.
pub fn write(path: &Path, identity: &Identity, overwrite: bool) -> Result<(), KeyError> {
    let contents = identity.secret_hex();
    write_private_file(path, contents.as_bytes(), overwrite).map_err(|error| {
        if error.kind() == io::ErrorKind::AlreadyExists && !overwrite {
            KeyError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            KeyError::Write {
                path: path.to_owned(),
                error,
            }
        }
    })
}

/// Writes `contents` and a newline to `path` with mode 0600, creating the parent directory.
/// Without `overwrite` an existing file is left alone (error kind `AlreadyExists`); with it, a
/// temporary file is renamed over the old one, so a crash never leaves a half-written secret.
pub(crate) fn write_private_file(path: &Path, contents: &[u8], overwrite: bool) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    if !overwrite {
        return create_private_file(path, contents);
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    create_private_file(&tmp, contents).and_then(|()| fs::rename(&tmp, path))
}

fn parse_secret(path: &Path, contents: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let trimmed = contents.trim();
    let hex = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    if hex.len() != 64 {
        return Err(KeyError::WrongLength {
            path: path.to_owned(),
            found: hex.chars().count(),
        });
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    alloy_primitives::hex::decode_to_slice(hex, &mut secret[..]).map_err(|err| {
        KeyError::NotHex {
            path: path.to_owned(),
            detail: err.to_string(),
        }
    })?;
    Ok(secret)
}

fn create_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            log::warn!(
                "key file {} has mode {mode:o}; it should be 600 (chmod 600 {})",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

    fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn test_vector_key_gives_documented_address_and_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "v.priv", VECTOR_KEY);
        let identity = load(&path).unwrap();
        assert_eq!(
            identity.address().to_checksum(None),
            "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
        );
        assert_eq!(
            identity.peer_id().to_string(),
            "16Uiu2HAkzh4QdxB7ijzVnwd6JFNNe4bcr1JBwYUypXe3pX5BRpqK"
        );
    }

    #[test]
    fn accepts_newline_uppercase_and_0x_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let expected = load(&write_file(dir.path(), "a.priv", VECTOR_KEY)).unwrap();
        for (i, variant) in [
            format!("{VECTOR_KEY}\n"),
            format!("0x{VECTOR_KEY}"),
            VECTOR_KEY.to_uppercase(),
            format!("  {VECTOR_KEY}\r\n"),
        ]
        .iter()
        .enumerate()
        {
            let loaded = load(&write_file(dir.path(), &format!("{i}.priv"), variant)).unwrap();
            assert_eq!(loaded.address(), expected.address(), "variant {variant:?}");
        }
    }

    #[test]
    fn generated_key_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir.path().join("keys"), "node0").unwrap();
        let (created, fresh) = load_or_create(&path).unwrap();
        assert!(fresh);
        let (again, fresh_again) = load_or_create(&path).unwrap();
        assert!(!fresh_again);
        assert_eq!(created.address(), again.address());
        assert_eq!(created.peer_id(), again.peer_id());
        let contents = fs::read_to_string(&path).unwrap();
        assert_eq!(contents.trim().len(), 64);
        assert!(
            contents
                .trim()
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn write_refuses_to_overwrite_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.priv");
        let first = Identity::generate();
        write(&path, &first, false).unwrap();
        let second = Identity::generate();
        assert!(matches!(
            write(&path, &second, false),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert_eq!(load(&path).unwrap().address(), first.address());
        write(&path, &second, true).unwrap();
        assert_eq!(load(&path).unwrap().address(), second.address());
        assert!(!dir.path().join("n.priv.tmp").exists());
    }

    #[test]
    fn bad_key_files_give_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        type IsExpected = fn(&KeyError) -> bool;
        let cases: [(&str, &[u8], IsExpected); 6] = [
            ("short", b"abcd", |e| {
                matches!(e, KeyError::WrongLength { found: 4, .. })
            }),
            ("long", &[b'a'; 66], |e| {
                matches!(e, KeyError::WrongLength { found: 66, .. })
            }),
            ("empty", b"", |e| matches!(e, KeyError::WrongLength { .. })),
            ("nothex", &[b'z'; 64], |e| {
                matches!(e, KeyError::NotHex { .. })
            }),
            ("binary", &[0xff; 64], |e| {
                matches!(e, KeyError::NotHex { .. })
            }),
            ("zero", &[b'0'; 64], |e| {
                matches!(e, KeyError::OutOfRange { .. })
            }),
        ];
        for (name, contents, expected) in cases {
            let path = dir.path().join(name);
            fs::write(&path, contents).unwrap();
            let err = load(&path).unwrap_err();
            assert!(expected(&err), "{name}: {err:?}");
            let text = err.to_string();
            assert!(!text.contains('\n'), "{name}: {text}");
            assert!(text.contains(name), "{name}: error names the file: {text}");
        }
        let order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        let path = write_file(dir.path(), "order", order);
        assert!(matches!(load(&path), Err(KeyError::OutOfRange { .. })));
        assert!(matches!(
            load(&dir.path().join("missing")),
            Err(KeyError::NotFound { .. })
        ));
    }

    #[test]
    fn names_cannot_escape_the_key_dir() {
        let dir = Path::new("keys");
        assert_eq!(
            key_path(dir, "node-0_a.b").unwrap(),
            dir.join("node-0_a.b.priv")
        );
        for bad in ["", "../x", "a/b", ".hidden", "a b", "ü"] {
            assert!(
                matches!(key_path(dir, bad), Err(KeyError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_peer_id_tells_its_address() {
        for seed in 1..5u8 {
            let identity = Identity::from_secret(&[seed; 32]).unwrap();
            assert_eq!(
                address_of_peer(&identity.peer_id()),
                Some(identity.address())
            );
        }
        assert_eq!(address_of_peer(&PeerId::random()), None);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let identity = Identity::from_secret(&[7u8; 32]).unwrap();
        let shown = format!("{identity:?}");
        assert!(!shown.contains(&"07".repeat(32)));
        assert!(shown.contains("address"));
    }
}
