//! `peerlane keygen`: a fresh x25519 identity, written as 64 hex digits.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
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
    let mut file = options
        .open(&args.out)
        .with_context(|| format!("cannot create key file {}", args.out.display()))?;
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
