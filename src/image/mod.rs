//! `image pack`: an image built through the Engine API from a local binary, with no registry
//! and no base image. A static binary goes into `FROM scratch` alone; a dynamic one brings its
//! ELF interpreter and the libraries `ldd` resolves, at the same paths. Files and folders added
//! beside it (an interpreter's standard library, a program's packages) bring the libraries
//! their own ELF files need the same way.
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
    /// Files and folders copied in whole (`--add`).
    pub added: Vec<Added>,
}

/// A file or folder of this machine copied into the image; folders with everything under them,
/// symbolic links kept as links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// Where it is here.
    pub host: PathBuf,
    /// Where it goes in the image (absolute).
    pub inside: PathBuf,
}

impl std::str::FromStr for Added {
    type Err = String;

    /// `HOST_PATH` (the same path inside) or `HOST_PATH:IMAGE_PATH`.
    fn from_str(s: &str) -> Result<Added, String> {
        let (host, inside) = s.split_once(':').unwrap_or((s, s));
        if host.is_empty() {
            return Err(format!("`{s}`: give a path, or HOST_PATH:IMAGE_PATH"));
        }
        if !inside.starts_with('/') {
            return Err(format!("`{s}`: the path in the image must be absolute (`{inside}` is not)"));
        }
        Ok(Added { host: host.into(), inside: inside.into() })
    }
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
    let libraries =
        parse_ldd(&ldd(binary)).map_err(|library| PackError::MissingLibrary { binary: binary.into(), library })?;
    Ok(Contents { binary: binary.into(), entry: entry.into(), libraries, added: Vec::new() })
}

/// Adds `added` to `contents` with the libraries their ELF files need; returns the files whose
/// libraries this machine lacks (with the first missing one), which are packed all the same: an
/// interpreter's optional modules (a GUI toolkit's binding, say) fail only when imported.
pub fn add(contents: &mut Contents, added: Vec<Added>) -> Result<Vec<(PathBuf, String)>, PackError> {
    let mut unresolved = Vec::new();
    for a in &added {
        for file in walk(&a.host)? {
            if !is_elf(&file) {
                continue;
            }
            match parse_ldd(&ldd(&file)) {
                Ok(libs) => contents.libraries.extend(libs),
                Err(missing) => unresolved.push((file, missing)),
            }
        }
    }
    contents.libraries.sort();
    contents.libraries.dedup();
    contents.added.extend(added);
    Ok(unresolved)
}

/// What `ldd` says of `path`; nothing without `ldd` (then taken as static: a dynamic binary
/// fails at start).
fn ldd(path: &Path) -> String {
    match Command::new("ldd").arg(path).output() {
        Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(_) => String::new(),
    }
}

/// The names in folder `dir`, sorted (an image's layers are the same whatever the disk order).
fn children(dir: &Path) -> Result<Vec<std::ffi::OsString>, PackError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PackError::Read { path: dir.into(), source })?;
    let mut names: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    names.sort();
    Ok(names)
}

/// Every regular file at or under `path` (links not followed).
fn walk(path: &Path) -> Result<Vec<PathBuf>, PackError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| PackError::Read { path: path.into(), source })?;
    if meta.is_file() {
        return Ok(vec![path.into()]);
    }
    let mut out = Vec::new();
    if meta.is_dir() {
        for name in children(path)? {
            out.extend(walk(&path.join(name))?);
        }
    }
    Ok(out)
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// Appends `host` (a file, a link or a folder, whole) to the context at `rootfs/<inside>`.
fn append_tree(tar: &mut tar::Builder<Vec<u8>>, host: &Path, inside: &Path) -> Result<(), PackError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |e| PackError::Read { path: host.into(), source: e };
    let meta = std::fs::symlink_metadata(host).map_err(read)?;
    let name = format!("rootfs/{}", inside.to_string_lossy().trim_start_matches('/'));
    let mut h = tar::Header::new_gnu();
    h.set_mtime(0);
    h.set_mode(meta.permissions().mode() & 0o7777);
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(host).map_err(read)?;
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        return tar.append_link(&mut h, &name, &target).map_err(PackError::Tar);
    }
    if !meta.is_dir() && !meta.is_file() {
        // A socket, a FIFO or a device: nothing a program's files are, and reading one would
        // block or never end.
        return Ok(());
    }
    if meta.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_cksum();
        tar.append_data(&mut h, format!("{name}/"), std::io::empty()).map_err(PackError::Tar)?;
        for name in children(host)? {
            append_tree(tar, &host.join(&name), &inside.join(&name))?;
        }
        return Ok(());
    }
    let data = std::fs::read(host).map_err(read)?;
    h.set_size(data.len() as u64);
    h.set_cksum();
    tar.append_data(&mut h, &name, data.as_slice()).map_err(PackError::Tar)
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
    for a in &contents.added {
        append_tree(&mut tar, &a.host, &a.inside)?;
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
    fn added_folders_go_in_whole_with_their_links() {
        assert_eq!(
            "/usr/lib/python3.11".parse::<Added>().unwrap(),
            Added { host: "/usr/lib/python3.11".into(), inside: "/usr/lib/python3.11".into() }
        );
        assert_eq!("app.py:/app/server.py".parse::<Added>().unwrap().inside, PathBuf::from("/app/server.py"));
        assert!("app.py:relative".parse::<Added>().unwrap_err().contains("must be absolute"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/mod.py"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink("/etc/nowhere.py", dir.path().join("pkg/dangling.py")).unwrap();
        // A dynamic ELF file (an interpreter's compiled module, say) brings its libraries.
        std::fs::copy("/bin/true", dir.path().join("pkg/true")).unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut contents = inspect(&exe, "swarmctl").unwrap();
        let unresolved = add(&mut contents, vec![Added { host: dir.path().join("pkg"), inside: "/opt/pkg".into() }]);
        assert!(unresolved.unwrap().is_empty());
        // The test binary is static: whatever libraries there are came with /bin/true.
        assert!(contents.libraries.iter().any(|l| l.to_string_lossy().contains("libc.so")), "{:?}", contents.libraries);
        let tar = context(&contents, &[]).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type())
            })
            .collect();
        let names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
        let mut expected = vec!["Dockerfile".to_string(), "rootfs/swarmctl".into()];
        expected.extend(contents.libraries.iter().map(|l| format!("rootfs{}", l.display())));
        expected.extend(
            [
                "rootfs/opt/pkg/",
                "rootfs/opt/pkg/dangling.py",
                "rootfs/opt/pkg/mod.py",
                "rootfs/opt/pkg/true",
                "rootfs/tmp/",
            ]
            .map(String::from),
        );
        assert_eq!(names, expected);
        let link = entries.iter().position(|(n, _)| n.ends_with("dangling.py")).unwrap();
        assert_eq!(entries[link].1, tar::EntryType::Symlink, "a link stays a link, even one that leads nowhere here");
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
