//! A node's identity: one secp256k1 secret that is at once its Ethereum signer (address, EIP-191
//! signatures) and its libp2p identity (PeerId, noise handshakes, gossipsub message signing).
//!
//! On disk a named node's secret is one of two files in the key folder ([`KeyFiles`]):
//!
//! - `<key-dir>/<name>.json`: a Web3 Secret Storage v3 keystore, encrypted under a password — the
//!   format of geth, foundry and eth-account, so a key made by them can be used as it is;
//! - `<key-dir>/<name>.priv`: 64 lowercase hex characters, unencrypted — the format of the original
//!   system, so its key files keep working (`oracle keygen --import` encrypts one).
//!
//! Both are written with mode 0600, and never over an existing file unless asked.

mod keystore;

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
    #[error("nothing to import: {path} not found")]
    NothingToImport { path: PathBuf },
    #[error(
        "no key: neither {keystore} nor {plain} exists (create one with `oracle keygen --name NAME`)"
    )]
    NoKey { keystore: PathBuf, plain: PathBuf },
    #[error(
        "both {keystore} and {plain} exist; keep one (the .priv is the unencrypted form: \
         remove it once the keystore is known to work)"
    )]
    BothFormats { keystore: PathBuf, plain: PathBuf },
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
        "keystore {path} is encrypted: give its password with --password-file FILE or the \
         ORACLE_KEY_PASSWORD environment variable"
    )]
    MissingPassword { path: PathBuf },
    #[error("wrong password for keystore {path} (or a damaged file: its MAC does not match)")]
    WrongPassword { path: PathBuf },
    #[error("keystore {path} is not a usable Web3 Secret Storage v3 file: {detail}")]
    InvalidKeystore { path: PathBuf, detail: String },
    #[error(
        "keystore {path} uses the key derivation function {kdf}; supported: scrypt, pbkdf2 with \
         hmac-sha256"
    )]
    UnsupportedKdf { path: PathBuf, kdf: String },
    #[error("keystore {path} uses the cipher {cipher}; supported: aes-128-ctr")]
    UnsupportedCipher { path: PathBuf, cipher: String },
    #[error("keystore {path} states the address {stated}, but its key is that of {actual}")]
    AddressMismatch {
        path: PathBuf,
        stated: Address,
        actual: Address,
    },
    #[error(
        "wrote {keystore}, but cannot remove the unencrypted {plain}: {error}; remove it by hand"
    )]
    RemovePlain {
        keystore: PathBuf,
        plain: PathBuf,
        error: io::Error,
    },
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

    fn secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signer.to_bytes().0)
    }

    fn secret_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(alloy_primitives::hex::encode(&self.secret()[..]))
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

/// The 32 bytes are zero or not below the secp256k1 group order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid secp256k1 secret key")]
pub struct InvalidSecret;

/// A keystore's password. It is read from a file or the environment, never from a flag value
/// (command lines are visible to every local user); `Debug` hides it.
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(text: Zeroizing<String>) -> Self {
        Self(text)
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// How a key is kept on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `NAME.json`: a Web3 Secret Storage v3 keystore, encrypted under a password.
    Keystore,
    /// `NAME.priv`: the secret as 64 hex characters, unencrypted.
    Plain,
}

/// The two files a named node's key may be kept in: `<key_dir>/<name>.json` and
/// `<key_dir>/<name>.priv`. At most one of them may exist, so which key a node uses is never a
/// guess.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    keystore: PathBuf,
    plain: PathBuf,
}

impl KeyFiles {
    /// The name must be a plain file name so that `--name ../x` cannot point outside `key_dir`.
    pub fn new(key_dir: &Path, name: &str) -> Result<Self, KeyError> {
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
        Ok(Self {
            keystore: key_dir.join(format!("{name}.json")),
            plain: key_dir.join(format!("{name}.priv")),
        })
    }

    /// The file of `format`.
    pub fn path(&self, format: KeyFormat) -> &Path {
        match format {
            KeyFormat::Keystore => &self.keystore,
            KeyFormat::Plain => &self.plain,
        }
    }

    /// The format of the file that holds the key, if one does.
    pub fn existing(&self) -> Result<Option<KeyFormat>, KeyError> {
        match (exists(&self.keystore)?, exists(&self.plain)?) {
            (true, true) => Err(KeyError::BothFormats {
                keystore: self.keystore.clone(),
                plain: self.plain.clone(),
            }),
            (true, false) => Ok(Some(KeyFormat::Keystore)),
            (false, true) => Ok(Some(KeyFormat::Plain)),
            (false, false) => Ok(None),
        }
    }

    /// Loads the key; a keystore needs its `password`.
    pub fn load(&self, password: Option<&Password>) -> Result<(Identity, KeyFormat), KeyError> {
        let format = self.existing()?.ok_or_else(|| KeyError::NoKey {
            keystore: self.keystore.clone(),
            plain: self.plain.clone(),
        })?;
        Ok((self.load_format(format, password)?, format))
    }

    fn load_format(
        &self,
        format: KeyFormat,
        password: Option<&Password>,
    ) -> Result<Identity, KeyError> {
        match format {
            KeyFormat::Keystore => load_keystore(&self.keystore, password),
            KeyFormat::Plain => load_plain(&self.plain),
        }
    }

    /// Writes `identity`: encrypted under `password` when there is one, else unencrypted.
    ///
    /// Without `overwrite` an existing key, in either file, is never touched. With it, the key is
    /// replaced and a file of the other format removed.
    pub fn create(
        &self,
        identity: &Identity,
        password: Option<&Password>,
        overwrite: bool,
    ) -> Result<KeyFormat, KeyError> {
        let (format, other) = match password {
            Some(_) => (KeyFormat::Keystore, &self.plain),
            None => (KeyFormat::Plain, &self.keystore),
        };
        if !overwrite && exists(other)? {
            return Err(KeyError::AlreadyExists {
                path: other.clone(),
            });
        }
        match password {
            Some(password) => write_keystore(&self.keystore, identity, password, overwrite)?,
            None => write_plain(&self.plain, identity, overwrite)?,
        }
        if overwrite {
            match fs::remove_file(other) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(KeyError::Write {
                        path: other.clone(),
                        error,
                    });
                }
                _ => {}
            }
        }
        Ok(format)
    }

    /// Loads the key, or creates one as [`create`](Self::create) does when there is none.
    ///
    /// Returns the identity, its format and whether it was created.
    pub fn load_or_create(
        &self,
        password: Option<&Password>,
    ) -> Result<(Identity, KeyFormat, bool), KeyError> {
        if let Some(format) = self.existing()? {
            return Ok((self.load_format(format, password)?, format, false));
        }
        let identity = Identity::generate();
        match self.create(&identity, password, false) {
            Ok(format) => Ok((identity, format, true)),
            // Another process created it between our look and our write: use theirs.
            Err(KeyError::AlreadyExists { .. }) => {
                let (identity, format) = self.load(password)?;
                Ok((identity, format, false))
            }
            Err(err) => Err(err),
        }
    }

    /// Encrypts the unencrypted key into the keystore under `password`, opens the keystore again
    /// with it, and only then deletes the unencrypted file: no step can lose the key.
    pub fn import(&self, password: &Password, overwrite: bool) -> Result<Identity, KeyError> {
        let identity = load_plain(&self.plain).map_err(|err| match err {
            KeyError::NotFound { path } => KeyError::NothingToImport { path },
            other => other,
        })?;
        write_keystore(&self.keystore, &identity, password, overwrite)?;
        // The keystore states the address it was written for; opening it checks the key against it.
        load_keystore(&self.keystore, Some(password))?;
        fs::remove_file(&self.plain).map_err(|error| KeyError::RemovePlain {
            keystore: self.keystore.clone(),
            plain: self.plain.clone(),
            error,
        })?;
        Ok(identity)
    }
}

/// Reads the unencrypted key file at `path`.
///
/// Accepts 64 hex characters (either case, optional `0x`, surrounding whitespace). A file that
/// others may read is used, with a warning: refusing would turn a permissions slip into an outage.
pub fn load_plain(path: &Path) -> Result<Identity, KeyError> {
    let contents = read_key_file(path)?;
    let text = std::str::from_utf8(&contents).map_err(|_| KeyError::NotHex {
        path: path.to_owned(),
        detail: "the file is not text".to_owned(),
    })?;
    let secret = parse_secret(path, text)?;
    let identity =
        Identity::from_secret(&secret).map_err(|InvalidSecret| KeyError::OutOfRange {
            path: path.to_owned(),
        })?;
    warn_if_readable_by_others(path);
    Ok(identity)
}

/// Reads and decrypts the keystore at `path` (Web3 Secret Storage v3, scrypt or PBKDF2).
///
/// Without a password the file is still read, so that a missing file is named as such.
pub fn load_keystore(path: &Path, password: Option<&Password>) -> Result<Identity, KeyError> {
    let contents = read_key_file(path)?;
    let text = std::str::from_utf8(&contents).map_err(|_| KeyError::InvalidKeystore {
        path: path.to_owned(),
        detail: "the file is not text".to_owned(),
    })?;
    let password = password.ok_or_else(|| KeyError::MissingPassword {
        path: path.to_owned(),
    })?;
    let identity = keystore::decrypt(path, text, password)?;
    warn_if_readable_by_others(path);
    Ok(identity)
}

/// Writes `identity`'s secret unencrypted to `path`; see [`write_private_file`].
pub fn write_plain(path: &Path, identity: &Identity, overwrite: bool) -> Result<(), KeyError> {
    write_key_file(path, identity.secret_hex().as_bytes(), overwrite)
}

/// Writes `identity` to `path` as a keystore encrypted under `password` (scrypt, with
/// eth-keystore's parameters); see [`write_private_file`].
pub fn write_keystore(
    path: &Path,
    identity: &Identity,
    password: &Password,
    overwrite: bool,
) -> Result<(), KeyError> {
    let json = keystore::encrypt(path, identity, password).map_err(|error| KeyError::Write {
        path: path.to_owned(),
        error,
    })?;
    write_key_file(path, json.as_bytes(), overwrite)
}

fn write_key_file(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), KeyError> {
    write_private_file(path, contents, overwrite).map_err(|error| {
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

fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match fs::read(path) {
        Ok(contents) => Ok(Zeroizing::new(contents)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(KeyError::NotFound {
            path: path.to_owned(),
        }),
        Err(error) => Err(KeyError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

fn exists(path: &Path) -> Result<bool, KeyError> {
    path.try_exists().map_err(|error| KeyError::Read {
        path: path.to_owned(),
        error,
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

    /// The address and peer id ARCHITECTURE.md gives for the test vector's key.
    fn assert_is_the_vector(identity: &Identity) {
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
    fn test_vector_key_gives_documented_address_and_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "v.priv", VECTOR_KEY);
        assert_is_the_vector(&load_plain(&path).unwrap());
    }

    #[test]
    fn accepts_newline_uppercase_and_0x_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let expected = load_plain(&write_file(dir.path(), "a.priv", VECTOR_KEY)).unwrap();
        for (i, variant) in [
            format!("{VECTOR_KEY}\n"),
            format!("0x{VECTOR_KEY}"),
            VECTOR_KEY.to_uppercase(),
            format!("  {VECTOR_KEY}\r\n"),
        ]
        .iter()
        .enumerate()
        {
            let loaded =
                load_plain(&write_file(dir.path(), &format!("{i}.priv"), variant)).unwrap();
            assert_eq!(loaded.address(), expected.address(), "variant {variant:?}");
        }
    }

    #[test]
    fn generated_key_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(&dir.path().join("keys"), "node0").unwrap();
        let (created, format, fresh) = files.load_or_create(None).unwrap();
        assert!(fresh);
        assert_eq!(format, KeyFormat::Plain);
        let (again, _, fresh_again) = files.load_or_create(None).unwrap();
        assert!(!fresh_again);
        let path = files.path(KeyFormat::Plain);
        assert_eq!(created.address(), again.address());
        assert_eq!(created.peer_id(), again.peer_id());
        let contents = fs::read_to_string(path).unwrap();
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
            let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn write_refuses_to_overwrite_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.priv");
        let first = Identity::generate();
        write_plain(&path, &first, false).unwrap();
        let second = Identity::generate();
        assert!(matches!(
            write_plain(&path, &second, false),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert_eq!(load_plain(&path).unwrap().address(), first.address());
        write_plain(&path, &second, true).unwrap();
        assert_eq!(load_plain(&path).unwrap().address(), second.address());
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
            let err = load_plain(&path).unwrap_err();
            assert!(expected(&err), "{name}: {err:?}");
            let text = err.to_string();
            assert!(!text.contains('\n'), "{name}: {text}");
            assert!(text.contains(name), "{name}: error names the file: {text}");
        }
        let order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        let path = write_file(dir.path(), "order", order);
        assert!(matches!(
            load_plain(&path),
            Err(KeyError::OutOfRange { .. })
        ));
        assert!(matches!(
            load_plain(&dir.path().join("missing")),
            Err(KeyError::NotFound { .. })
        ));
    }

    #[test]
    fn names_cannot_escape_the_key_dir() {
        let dir = Path::new("keys");
        let files = KeyFiles::new(dir, "node-0_a.b").unwrap();
        assert_eq!(files.path(KeyFormat::Plain), dir.join("node-0_a.b.priv"));
        assert_eq!(files.path(KeyFormat::Keystore), dir.join("node-0_a.b.json"));
        for bad in ["", "../x", "a/b", ".hidden", "a b", "ü"] {
            assert!(
                matches!(KeyFiles::new(dir, bad), Err(KeyError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    fn password(text: &str) -> Password {
        Password::new(Zeroizing::new(text.to_owned()))
    }

    #[test]
    fn a_key_lives_in_one_file_and_is_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(dir.path(), "n").unwrap();
        assert!(matches!(files.load(None), Err(KeyError::NoKey { .. })));
        let first = Identity::generate();
        let pw = password("pw");
        assert_eq!(
            files.create(&first, Some(&pw), false).unwrap(),
            KeyFormat::Keystore
        );
        let keystore = fs::read(files.path(KeyFormat::Keystore)).unwrap();
        // Neither format may be written beside the other, nor over it, without `overwrite`.
        let second = Identity::generate();
        for password in [Some(&pw), None] {
            match files.create(&second, password, false) {
                Err(KeyError::AlreadyExists { path }) => {
                    assert_eq!(path, files.path(KeyFormat::Keystore))
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(fs::read(files.path(KeyFormat::Keystore)).unwrap(), keystore);
        assert!(!files.path(KeyFormat::Plain).exists());
        let (loaded, format) = files.load(Some(&pw)).unwrap();
        assert_eq!(
            (loaded.address(), format),
            (first.address(), KeyFormat::Keystore)
        );

        // Replaced by an unencrypted key: the keystore goes.
        assert_eq!(files.create(&second, None, true).unwrap(), KeyFormat::Plain);
        assert!(!files.path(KeyFormat::Keystore).exists());
        let (loaded, format) = files.load(Some(&pw)).unwrap();
        assert_eq!(
            (loaded.address(), format),
            (second.address(), KeyFormat::Plain)
        );

        // Two files are two candidate keys: refused rather than guessed.
        fs::write(files.path(KeyFormat::Keystore), &keystore).unwrap();
        assert!(matches!(
            files.load(Some(&pw)),
            Err(KeyError::BothFormats { .. })
        ));
        assert!(matches!(
            files.load_or_create(Some(&pw)),
            Err(KeyError::BothFormats { .. })
        ));
    }

    #[test]
    fn a_node_without_a_key_creates_an_encrypted_one_when_given_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(dir.path(), "n").unwrap();
        let pw = password("pw");
        let (created, format, fresh) = files.load_or_create(Some(&pw)).unwrap();
        assert!(fresh);
        assert_eq!(format, KeyFormat::Keystore);
        let (again, _, fresh) = files.load_or_create(Some(&pw)).unwrap();
        assert!(!fresh);
        assert_eq!(again.peer_id(), created.peer_id());
        assert!(matches!(
            files.load_or_create(None),
            Err(KeyError::MissingPassword { .. })
        ));
    }

    #[test]
    fn import_encrypts_the_plain_key_with_the_same_identity_and_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(dir.path(), "v").unwrap();
        let plain = files.path(KeyFormat::Plain).to_owned();
        let keystore = files.path(KeyFormat::Keystore).to_owned();
        let pw = password("pw");
        assert!(matches!(
            files.import(&pw, false),
            Err(KeyError::NothingToImport { path }) if path == plain
        ));
        fs::write(&plain, VECTOR_KEY).unwrap();

        // An existing keystore is not replaced, and the plain key stays.
        fs::write(&keystore, "{}").unwrap();
        assert!(matches!(
            files.import(&pw, false),
            Err(KeyError::AlreadyExists { path }) if path == keystore
        ));
        assert_eq!(fs::read_to_string(&keystore).unwrap(), "{}");
        assert_eq!(fs::read_to_string(&plain).unwrap(), VECTOR_KEY);
        fs::remove_file(&keystore).unwrap();

        let imported = files.import(&pw, false).unwrap();
        assert!(!plain.exists());
        let (loaded, format) = files.load(Some(&pw)).unwrap();
        assert_eq!(format, KeyFormat::Keystore);
        for identity in [&imported, &loaded] {
            assert_is_the_vector(identity);
        }
    }

    #[test]
    fn a_password_never_shows() {
        assert_eq!(format!("{:?}", password("hunter2")), "Password(…)");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let identity = Identity::from_secret(&[7u8; 32]).unwrap();
        let shown = format!("{identity:?}");
        assert!(!shown.contains(&"07".repeat(32)));
        assert!(shown.contains("address"));
    }
}
