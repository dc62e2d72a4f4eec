//! `peerlane keygen`: a fresh x25519 identity, written as 64 hex digits; `peerlane key show`:
//! what a key file's owner tells the other operators (peer id, public key, seed address).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use netcore::NetworkAddress;
use peerlane::Identity;

/// Arguments of `peerlane keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key (64 hex digits and a newline; mode 0600 on unix). An
    /// existing file is not overwritten unless --force is given.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// `peerlane key …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// Print a key file's peer id, public key, and the seed address and `[seeds]` entry other
    /// nodes use to dial this one.
    Show {
        /// The key file (as `peerlane keygen` writes it).
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// Where this node is reachable, e.g. /ip4/10.0.0.1/tcp/6180 (its listen address, or
        /// its advertised address when it listens on 0.0.0.0). Default: a placeholder to edit.
        #[arg(long, value_name = "ADDR")]
        address: Option<NetworkAddress>,
    },
}

/// Writes the key file and prints the peer id and public key.
pub(crate) fn run(args: &KeygenArgs) -> anyhow::Result<()> {
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let mut options = OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&args.out).map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::AlreadyExists {
            " (keygen never overwrites a key; pass --force to replace it)"
        } else {
            ""
        };
        anyhow::Error::new(err).context(format!(
            "cannot create key file {}{hint}",
            args.out.display()
        ))
    })?;
    #[cfg(unix)]
    {
        // An overwritten file keeps its old mode unless set again.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict key file {}", args.out.display()))?;
    }
    writeln!(file, "{}", hex::encode(identity.private_key().as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", args.out.display()))?;
    println!("peer id: {}", identity.peer_id());
    println!(
        "public key: {}",
        noise::keys::format_public_key(&identity.public_key())
    );
    Ok(())
}

/// Runs `peerlane key …`.
pub(crate) fn run_key(command: &KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Show { key_file, address } => show(key_file, address.as_ref()),
    }
}

/// Prints what other operators need to dial the owner of `key_file`.
fn show(key_file: &Path, address: Option<&NetworkAddress>) -> anyhow::Result<()> {
    let identity = read_key_file(key_file)?;
    let key = noise::keys::format_public_key(&identity.public_key());
    let base = match address {
        Some(address) => address.base().to_string(),
        None => "/ip4/<this node's IP>/tcp/<port>".to_owned(),
    };
    let seed = format!("{base}/noise-ik/{key}/handshake/0");
    println!("peer id: {}", identity.peer_id());
    println!("public key: {key}");
    println!("seed address: {seed}");
    println!("--seed {}@{seed}", identity.peer_id());
    println!("[seeds.{}]", identity.peer_id());
    println!("addresses = [\"{seed}\"]");
    println!("role = \"validator\"");
    Ok(())
}

/// Reads a key file as `peerlane keygen` writes it; warns (once) when others may read it.
pub(crate) fn read_key_file(path: &Path) -> anyhow::Result<Identity> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let identity =
        Identity::from_hex(&text).with_context(|| format!("key file {}", path.display()))?;
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            node_warn!(
                path = %path.display(),
                "key file {} is readable by others (mode {mode:o}): anyone who reads it can \
                 impersonate this node; run chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    Ok(identity)
}
