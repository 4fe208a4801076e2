//! Generates the Rust side of include/mxsrs.h with bindgen and, with the `maxscale-shim`
//! feature, compiles the C++ shim that MaxScale loads. The shim needs only a MaxScale source
//! tree of a supported release (MAXSCALE_SRC): what MaxScale's configure step would generate
//! (maxscale/version.hh) is generated here, and the Connector/C headers come from the system
//! (libmariadb-dev). A configured build tree (MAXSCALE_BUILD) is still accepted and must match.
//! Without the feature, the modules load only into the Rust test host.

use std::env;
use std::path::{Path, PathBuf};

#[path = "src/shim/maxscale_tree.rs"]
mod maxscale_tree;

fn main() {
    println!("cargo:rerun-if-changed=include/mxsrs.h");
    println!("cargo:rerun-if-changed=src/shim/shim.cc");
    println!("cargo:rerun-if-changed=src/shim/maxscale_tree.rs");
    println!("cargo:rerun-if-env-changed=MAXSCALE_SRC");
    println!("cargo:rerun-if-env-changed=MAXSCALE_BUILD");
    println!("cargo:rerun-if-env-changed=MARIADB_CONNECTOR_INCLUDE");
    println!("cargo::rustc-check-cfg=cfg(mxs_shim)");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindgen::Builder::default()
        .header("include/mxsrs.h")
        .allowlist_item("mxsrs_.*|MXSRS_.*")
        .default_enum_style(bindgen::EnumVariation::Rust {
            non_exhaustive: false,
        })
        .derive_debug(true)
        .derive_default(true)
        .generate()
        .expect("bindgen failed on include/mxsrs.h (is libclang installed?)")
        .write_to_file(out.join("mxsrs.rs"))
        .unwrap();

    if env::var_os("CARGO_FEATURE_MAXSCALE_SHIM").is_none() {
        return;
    }
    let src = env::var_os("MAXSCALE_SRC")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let build = env::var_os("MAXSCALE_BUILD")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let Some(src) = src else {
        fail(&format!(
            "the maxscale feature needs MAXSCALE_SRC: a MaxScale source tree of the release the modules are for \
             (supported: {}; e.g. git clone --branch maxscale-24.02.3 of MaxScale's repository)",
            maxscale_tree::supported_list()
        ));
    };
    if let Err(e) = build_shim(&src, build.as_deref(), &out) {
        fail(&e);
    }
}

/// A build-script panic buries its message in a backtrace; this prints it as cargo's error.
fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn build_shim(src: &Path, build: Option<&Path>, out: &Path) -> Result<(), String> {
    let version = maxscale_tree::source_version(src)?;
    maxscale_tree::check_supported(version, src)?;
    if let Some(build) = build {
        let built = maxscale_tree::build_version(build)?;
        if built != version {
            return Err(format!(
                "MAXSCALE_BUILD {} was configured for MaxScale {built}, MAXSCALE_SRC {} is {version}",
                build.display(),
                src.display()
            ));
        }
    }
    let generated = maxscale_tree::write_version_hh(src, version, &out.join("maxscale-include"))?;
    let system_cc = env::var_os("MARIADB_CONNECTOR_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/include/mariadb".into());
    let connector = maxscale_tree::connector_include(build, &system_cc)?;

    let mut cc = cc::Build::new();
    cc.cpp(true)
        .file("src/shim/shim.cc")
        .std("gnu++17")
        .include("include");
    for dir in maxscale_tree::source_includes(src) {
        cc.include(dir);
    }
    cc.include(generated)
        .include(connector)
        // The version the shim's conditionals test, as one number: 240203 for 24.02.3.
        .define(
            "MXSRS_MAXSCALE_VERSION",
            version.number().to_string().as_str(),
        )
        // What MaxScale's own modules are compiled with; SS_DEBUG must stay undefined (it
        // changes class layouts).
        .define("_GNU_SOURCE", "1")
        .define("HAVE_GLIBC", "1")
        .define("HAVE_SYSTEMD", "1")
        .define("HAVE_TGKILL", "1")
        .define("OPENSSL_1_1", None)
        .define("NDEBUG", None)
        .define("MXB_MODULE_NAME", "mxsrs_module_name")
        .flag("-fPIC")
        .flag("-Wno-unused-parameter")
        .opt_level(2);
    cc.try_compile("mxsrs_shim").map_err(|e| {
        format!(
            "compiling the shim against MaxScale {version} (source tag {}) failed: {e}",
            version.tag()
        )
    })?;
    // What `make install` compares with the MaxScale it installs into: target/<profile>/ holds
    // the modules, OUT_DIR is target/<profile>/build/<pkg>-<hash>/out.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let file = profile_dir.join("modules-maxscale-version");
        std::fs::write(&file, format!("{version}\n"))
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    println!("cargo:rustc-cfg=mxs_shim");
    Ok(())
}
