//! `image pack`: an image built through the Engine API from a local binary, with no registry
//! and no base image. A static binary goes into `FROM scratch` alone; a dynamic one brings its
//! ELF interpreter and the libraries `ldd` resolves, at the same paths.
//!
//! The context (Dockerfile + files) is computed here without I/O to the engine; `engine`
//! sends it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Why a binary cannot be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The binary is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `ldd` could not resolve a library.
    #[error("{binary} needs {library}, which ldd cannot find on this machine")]
    MissingLibrary {
        /// The binary.
        binary: PathBuf,
        /// The library.
        library: String,
    },
    /// Building the tar stream failed.
    #[error("cannot build the image context: {0}")]
    Tar(std::io::Error),
}

/// What goes into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The binary, copied to `/<entry>`.
    pub binary: PathBuf,
    /// Name of the binary inside the image (`/swarmctl`, `/traefik`, …).
    pub entry: String,
    /// Shared libraries and the ELF interpreter (absolute paths, copied to the same paths).
    pub libraries: Vec<PathBuf>,
}

impl Contents {
    /// True when the binary needs nothing else.
    pub fn is_static(&self) -> bool {
        self.libraries.is_empty()
    }
}

/// Finds what `binary` needs at run time, by asking `ldd` (Debian's libc-bin).
pub fn inspect(binary: &Path, entry: &str) -> Result<Contents, PackError> {
    std::fs::metadata(binary).map_err(|source| PackError::Read { path: binary.into(), source })?;
    let output = Command::new("ldd").arg(binary).output();
    let text = match output {
        Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(_) => String::new(), // no ldd: treat as static; a dynamic binary then fails at start
    };
    let libraries = parse_ldd(&text).map_err(|library| PackError::MissingLibrary { binary: binary.into(), library })?;
    Ok(Contents { binary: binary.into(), entry: entry.into(), libraries })
}

/// The absolute paths in `ldd` output; `Err(name)` for a library it reports `not found`.
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            return Ok(Vec::new());
        }
        if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                return Err(name.trim().to_string());
            }
            if let Some(path) = rest.split_whitespace().next().filter(|p| p.starts_with('/')) {
                out.push(PathBuf::from(path));
            }
        } else if let Some(path) = line.split_whitespace().next().filter(|p| p.starts_with('/')) {
            out.push(PathBuf::from(path)); // the interpreter: "/lib64/ld-linux-x86-64.so.2 (0x…)"
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The Dockerfile of a packed image.
pub fn dockerfile(contents: &Contents, labels: &[(String, String)]) -> String {
    let mut d = String::from("FROM scratch\nCOPY rootfs/ /\n");
    for (k, v) in labels {
        d.push_str(&format!("LABEL {}={}\n", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()));
    }
    d.push_str(&format!("ENTRYPOINT [\"/{}\"]\n", contents.entry));
    d
}

/// The build context as a tar stream: the Dockerfile, the binary, its libraries, and an empty
/// world-writable `/tmp`.
pub fn context(contents: &Contents, labels: &[(String, String)]) -> Result<Vec<u8>, PackError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| -> Result<(), PackError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, path, data).map_err(PackError::Tar)
    };
    add("Dockerfile", dockerfile(contents, labels).as_bytes(), 0o644)?;
    let read = |p: &Path| std::fs::read(p).map_err(|source| PackError::Read { path: p.into(), source });
    add(&format!("rootfs/{}", contents.entry), &read(&contents.binary)?, 0o755)?;
    for lib in &contents.libraries {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_string();
        add(&format!("rootfs/{inside}"), &read(lib)?, 0o755)?;
    }
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o1777);
    dir.set_mtime(0);
    dir.set_cksum();
    tar.append_data(&mut dir, "rootfs/tmp/", std::io::empty()).map_err(PackError::Tar)?;
    tar.into_inner().map_err(PackError::Tar)
}

/// The first 10 hex digits of the SHA-256 of a file: the content part of an image tag.
pub fn content_hash(path: &Path) -> Result<String, PackError> {
    let bytes = std::fs::read(path).map_err(|source| PackError::Read { path: path.into(), source })?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().take(5).map(|b| format!("{b:02x}")).collect())
}

/// The tag of the `builtin` reference-server image for the running binary:
/// `swarmctl/mcp-server:<version>-<content hash>`, so a rebuilt binary is a new image.
pub fn builtin_tag() -> Result<String, PackError> {
    let exe = std::env::current_exe().map_err(|source| PackError::Read { path: "/proc/self/exe".into(), source })?;
    Ok(format!("{}:{}-{}", crate::render::BUILTIN_IMAGE_REPO, env!("CARGO_PKG_VERSION"), content_hash(&exe)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let dynamic = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(dynamic).unwrap(),
            vec![PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
        assert_eq!(parse_ldd("\tstatically linked\n").unwrap(), Vec::<PathBuf>::new());
        assert_eq!(parse_ldd("\tnot a dynamic executable\n").unwrap(), Vec::<PathBuf>::new());
        assert_eq!(parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err(), "libfoo.so.1");
    }

    #[test]
    fn the_running_test_binary_is_static_and_packs() {
        let exe = std::env::current_exe().unwrap();
        let contents = inspect(&exe, "swarmctl").unwrap();
        assert!(contents.is_static(), "the crate is built with +crt-static: {:?}", contents.libraries);
        let tar = context(&contents, &[("a".into(), "b".into())]).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["Dockerfile", "rootfs/swarmctl", "rootfs/tmp/"]);
        assert_eq!(dockerfile(&contents, &[]), "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/swarmctl\"]\n");
    }
}
