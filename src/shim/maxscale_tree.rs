//! What build.rs needs to know about the MaxScale source tree a shim is compiled against: its
//! version (and whether we support it), the `maxscale/version.hh` its configure step would
//! generate, and where the headers are. Plain std so that build.rs can include it with
//! `#[path]`; its unit tests run with the bridge's (`cargo test -p mxs-bridge`).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// A MaxScale release, e.g. 24.02.3 (the minor is written with two digits, as MaxScale does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// MaxScale's `MODULE_INFO_VERSION`, the number its loader compares, e.g. 240203.
    pub fn number(&self) -> u32 {
        10000 * self.major + 100 * self.minor + self.patch
    }

    /// The source tag a module for this release is built against.
    pub fn tag(&self) -> String {
        format!("maxscale-{self}")
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}.{}", self.major, self.minor, self.patch)
    }
}

/// The releases the shim is written and tested for. 24.02.4 is the head of the 24.02 branch.
pub const SUPPORTED: [Version; 4] = [
    Version {
        major: 23,
        minor: 8,
        patch: 6,
    },
    Version {
        major: 24,
        minor: 2,
        patch: 3,
    },
    Version {
        major: 24,
        minor: 2,
        patch: 4,
    },
    Version {
        major: 24,
        minor: 8,
        patch: 0,
    },
];

pub fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn check_supported(v: Version, what: &Path) -> Result<(), String> {
    if SUPPORTED.contains(&v) {
        return Ok(());
    }
    Err(format!(
        "{} is MaxScale {v}, which these modules do not support; supported: {} \
         (build against a source tree of one of those: git clone --branch maxscale-<version> …)",
        what.display(),
        supported_list()
    ))
}

/// The version a source tree declares: `VERSION.cmake` sets MAXSCALE_VERSION_MAJOR/MINOR/PATCH
/// itself or includes the file that does (`versions/VERSIONxxxx.cmake`).
pub fn source_version(src: &Path) -> Result<Version, String> {
    let top = src.join("VERSION.cmake");
    let text = fs::read_to_string(&top).map_err(|e| {
        format!(
            "{}: {e}: MAXSCALE_SRC must be a MaxScale source tree (the folder with VERSION.cmake)",
            top.display()
        )
    })?;
    let mut sets = cmake_sets(&text);
    for line in text.lines() {
        let line = line.trim();
        if let Some(inner) = line
            .strip_prefix("include(")
            .and_then(|l| l.strip_suffix(')'))
        {
            let rel = inner
                .trim()
                .trim_matches('"')
                .replace("${CMAKE_SOURCE_DIR}", "");
            let path = src.join(rel.trim_start_matches('/'));
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            sets.extend(cmake_sets(&text));
        }
    }
    let get = |name: &str| -> Result<u32, String> {
        let value = sets
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("{}: no {name} in the MaxScale version files", top.display()))?;
        value
            .parse()
            .map_err(|_| format!("{}: {name} is '{value}', not a number", top.display()))
    };
    Ok(Version {
        major: get("MAXSCALE_VERSION_MAJOR")?,
        minor: get("MAXSCALE_VERSION_MINOR")?,
        patch: get("MAXSCALE_VERSION_PATCH")?,
    })
}

/// `set(NAME "VALUE" ...)` lines of a cmake file, in order.
fn cmake_sets(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let inner = l.trim().strip_prefix("set(")?;
            let mut words = inner.split_whitespace();
            let name = words.next()?.to_string();
            let value = words
                .next()?
                .trim_end_matches(')')
                .trim_matches('"')
                .to_string();
            Some((name, value))
        })
        .collect()
}

/// The version a configured build tree was generated for (its `include/maxscale/version.hh`).
pub fn build_version(build: &Path) -> Result<Version, String> {
    let path = build.join("include/maxscale/version.hh");
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e}: MAXSCALE_BUILD must be a configured MaxScale build tree",
            path.display()
        )
    })?;
    let get = |name: &str| -> Result<u32, String> {
        text.lines()
            .find_map(|l| {
                let rest = l.split_once(&format!("{name} ="))?.1;
                rest.trim().trim_end_matches(';').trim().parse().ok()
            })
            .ok_or_else(|| format!("{}: no {name}", path.display()))
    };
    Ok(Version {
        major: get("MAXSCALE_VERSION_MAJOR")?,
        minor: get("MAXSCALE_VERSION_MINOR")?,
        patch: get("MAXSCALE_VERSION_PATCH")?,
    })
}

/// Writes `<out>/maxscale/version.hh` as MaxScale's configure step would, from the tree's
/// `include/maxscale/version.hh.in`.
pub fn write_version_hh(src: &Path, v: Version, out: &Path) -> Result<PathBuf, String> {
    let template = src.join("include/maxscale/version.hh.in");
    let text = fs::read_to_string(&template).map_err(|e| format!("{}: {e}", template.display()))?;
    let text = text
        .replace("@MAXSCALE_VERSION@", &v.to_string())
        .replace("@MAXSCALE_VERSION_MAJOR@", &v.major.to_string())
        .replace("@MAXSCALE_VERSION_MINOR_NUM@", &v.minor.to_string())
        .replace("@MAXSCALE_VERSION_MINOR@", &v.minor.to_string())
        .replace("@MAXSCALE_VERSION_PATCH@", &v.patch.to_string());
    if let Some(at) = text.find('@').filter(|&i| text[i + 1..].contains('@')) {
        let name: String = text[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        return Err(format!(
            "{}: unknown placeholder {name}",
            template.display()
        ));
    }
    let dir = out.join("maxscale");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("version.hh");
    fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(out.to_path_buf())
}

/// The MariaDB Connector/C headers: a configured build tree's own copy, else the system's
/// (Debian's libmariadb-dev; MaxScale's headers need only its declarations).
pub fn connector_include(build: Option<&Path>, system: &Path) -> Result<PathBuf, String> {
    if let Some(b) = build {
        let dir = b.join("connector-c/install/include/mariadb");
        if dir.join("mysql.h").exists() {
            return Ok(dir);
        }
    }
    if system.join("mysql.h").exists() {
        return Ok(system.to_path_buf());
    }
    Err(format!(
        "no MariaDB Connector/C headers: {} has no mysql.h (apt-get install libmariadb-dev)",
        system.display()
    ))
}

/// The source tree's header folders a router includes (those present in this release).
pub fn source_includes(src: &Path) -> Vec<PathBuf> {
    [
        "include",
        "server/modules/include",
        "maxutils/maxbase/include",
        "maxutils/maxsql/include",
        "maxutils/maxsimd/include",
        "jwt-cpp/include",
    ]
    .iter()
    .map(|d| src.join(d))
    .filter(|d| d.is_dir())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(version_cmake: &str, extra: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("VERSION.cmake"), version_cmake).unwrap();
        for (path, text) in extra {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        dir
    }

    const V2402: &str =
        "# MaxScale version\nset(MAXSCALE_VERSION_MAJOR \"24\" CACHE STRING \"Major version\")\n\
        set(MAXSCALE_VERSION_MINOR \"02\" CACHE STRING \"Minor version\")\n\
        set(MAXSCALE_VERSION_PATCH \"3\" CACHE STRING \"Patch version\")\n\
        set(MAXSCALE_VERSION_MINOR_NUM \"2\" CACHE STRING \"Minor version\")\n";

    #[test]
    fn reads_the_version_through_the_include() {
        let t = tree(
            "include(${CMAKE_SOURCE_DIR}/versions/VERSION2402.cmake)\n",
            &[("versions/VERSION2402.cmake", V2402)],
        );
        let v = source_version(t.path()).unwrap();
        assert_eq!(
            v,
            Version {
                major: 24,
                minor: 2,
                patch: 3
            }
        );
        assert_eq!(v.to_string(), "24.02.3");
        assert_eq!(v.number(), 240203);
        assert_eq!(v.tag(), "maxscale-24.02.3");
        assert!(check_supported(v, t.path()).is_ok());
    }

    #[test]
    fn reads_a_version_set_in_version_cmake_itself() {
        let t = tree(
            &V2402.replace("\"3\"", "\"0\"").replace("\"02\"", "\"08\""),
            &[],
        );
        assert_eq!(source_version(t.path()).unwrap().to_string(), "24.08.0");
    }

    #[test]
    fn refuses_an_unsupported_version_naming_the_supported_ones() {
        let t = tree(&V2402.replace("\"3\"", "\"9\""), &[]);
        let v = source_version(t.path()).unwrap();
        let err = check_supported(v, t.path()).unwrap_err();
        assert!(err.contains("MaxScale 24.02.9"), "{err}");
        assert!(
            err.contains("supported: 23.08.6, 24.02.3, 24.02.4, 24.08.0"),
            "{err}"
        );
    }

    #[test]
    fn a_folder_that_is_not_a_source_tree_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = source_version(dir.path()).unwrap_err();
        assert!(
            err.contains("VERSION.cmake")
                && err.contains("MAXSCALE_SRC must be a MaxScale source tree"),
            "{err}"
        );
        let t = tree("set(MAXSCALE_VERSION_MAJOR \"24\")\n", &[]);
        assert!(source_version(t.path())
            .unwrap_err()
            .contains("no MAXSCALE_VERSION_MINOR"));
        let t = tree(
            "include(${CMAKE_SOURCE_DIR}/versions/VERSION9999.cmake)\n",
            &[],
        );
        assert!(source_version(t.path())
            .unwrap_err()
            .contains("VERSION9999.cmake"));
    }

    #[test]
    fn generates_version_hh_like_configure() {
        let template =
            "#pragma once\n\nconstexpr char MAXSCALE_VERSION[] = \"@MAXSCALE_VERSION@\";\n\
            constexpr int MAXSCALE_VERSION_MAJOR = @MAXSCALE_VERSION_MAJOR@;\n\
            constexpr int MAXSCALE_VERSION_MINOR = @MAXSCALE_VERSION_MINOR_NUM@;\n\
            constexpr int MAXSCALE_VERSION_PATCH = @MAXSCALE_VERSION_PATCH@;\n";
        let t = tree(V2402, &[("include/maxscale/version.hh.in", template)]);
        let out = tempfile::tempdir().unwrap();
        let v = Version {
            major: 24,
            minor: 2,
            patch: 3,
        };
        write_version_hh(t.path(), v, out.path()).unwrap();
        let text = fs::read_to_string(out.path().join("maxscale/version.hh")).unwrap();
        assert!(text.contains("MAXSCALE_VERSION[] = \"24.02.3\";"));
        assert!(text.contains("MAXSCALE_VERSION_MINOR = 2;"));
        // What we generate reads back as a configured tree's header does.
        fs::create_dir_all(out.path().join("include")).unwrap();
        fs::rename(
            out.path().join("maxscale"),
            out.path().join("include/maxscale"),
        )
        .unwrap();
        assert_eq!(build_version(out.path()).unwrap(), v);

        let t = tree(
            V2402,
            &[(
                "include/maxscale/version.hh.in",
                "x = @MAXSCALE_NEW_THING@;",
            )],
        );
        let err = write_version_hh(t.path(), v, out.path()).unwrap_err();
        assert!(err.contains("@MAXSCALE_NEW_THING@"), "{err}");
    }

    #[test]
    fn connector_headers_come_from_the_build_tree_first() {
        let build = tree("", &[("connector-c/install/include/mariadb/mysql.h", "")]);
        let system = tempfile::tempdir().unwrap();
        assert_eq!(
            connector_include(Some(build.path()), system.path()).unwrap(),
            build.path().join("connector-c/install/include/mariadb")
        );
        let err = connector_include(None, system.path()).unwrap_err();
        assert!(err.contains("libmariadb-dev"), "{err}");
        fs::write(system.path().join("mysql.h"), "").unwrap();
        assert_eq!(
            connector_include(None, system.path()).unwrap(),
            system.path()
        );
    }

    /// `make install`'s check (src/shim/check_install.sh) against a fake module directory.
    fn check_install(libdir: &Path, built: &str, bin: Option<&Path>) -> (bool, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/shim/check_install.sh");
        let mut cmd = std::process::Command::new("sh");
        cmd.arg(script).arg(libdir).arg(built);
        if let Some(b) = bin {
            cmd.arg(b);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    #[test]
    fn install_refuses_another_release_and_names_the_tag() {
        let lib = tempfile::tempdir().unwrap();
        // The release string as it sits in the library, among other strings and bytes.
        let mut bytes = b"\x7fELF\0\0GLIBC_2.34\0".to_vec();
        for _ in 0..3 {
            bytes.extend_from_slice(b"\x0023.08.6\x00MaxScale %s\x00\x01\x02");
        }
        bytes.extend_from_slice(b"\x003.3.7\x00");
        fs::write(lib.path().join("libmaxscale-common.so.1.0.0"), &bytes).unwrap();
        let (ok, text) = check_install(lib.path(), "24.02.3", None);
        assert!(!ok, "{text}");
        assert!(
            text.contains("built for MaxScale 24.02.3")
                && text.contains("belongs to MaxScale 23.08.6"),
            "{text}"
        );
        assert!(text.contains("source tag maxscale-23.08.6"), "{text}");
        let (ok, text) = check_install(lib.path(), "23.08.6", None);
        assert!(ok, "{text}");
    }

    #[test]
    fn install_reads_maxscale_version_without_the_library() {
        let lib = tempfile::tempdir().unwrap();
        let (ok, text) = check_install(lib.path(), "24.08.0", None);
        assert!(!ok && text.contains("cannot tell which MaxScale"), "{text}");
        let bin = lib.path().join("maxscale");
        fs::write(&bin, "#!/bin/sh\necho 'MaxScale 24.08.0'\n").unwrap();
        fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (ok, text) = check_install(lib.path(), "24.08.0", Some(&bin));
        assert!(ok, "{text}");
        let (ok, text) = check_install(lib.path(), "24.02.4", Some(&bin));
        assert!(
            !ok && text.contains("belongs to MaxScale 24.08.0")
                && text.contains("maxscale-24.08.0"),
            "{text}"
        );
        let (ok, text) = check_install(&lib.path().join("nope"), "24.08.0", None);
        assert!(!ok && text.contains("is not a directory"), "{text}");
    }
}
