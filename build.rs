//! Generates the Rust side of include/mxsrs.h with bindgen and, with the `maxscale-shim`
//! feature, compiles the C++ shim that MaxScale loads against a MaxScale 24.02.3 source tree
//! and its configured build tree (MAXSCALE_SRC, MAXSCALE_BUILD). A module built with the shim
//! loads only into MaxScale; without it, only into the Rust test host.

use std::env;
use std::path::PathBuf;

const EXPECTED_VERSION: &str = "24.02.3";

fn main() {
    println!("cargo:rerun-if-changed=include/mxsrs.h");
    println!("cargo:rerun-if-changed=src/shim/shim.cc");
    println!("cargo:rerun-if-env-changed=MAXSCALE_SRC");
    println!("cargo:rerun-if-env-changed=MAXSCALE_BUILD");
    println!("cargo::rustc-check-cfg=cfg(mxs_shim)");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindgen::Builder::default()
        .header("include/mxsrs.h")
        .allowlist_item("mxsrs_.*|MXSRS_.*")
        .default_enum_style(bindgen::EnumVariation::Rust { non_exhaustive: false })
        .derive_debug(true)
        .derive_default(true)
        .generate()
        .expect("bindgen failed on include/mxsrs.h (is libclang installed?)")
        .write_to_file(out.join("mxsrs.rs"))
        .unwrap();

    if env::var_os("CARGO_FEATURE_MAXSCALE_SHIM").is_none() {
        return;
    }
    match (env::var("MAXSCALE_SRC"), env::var("MAXSCALE_BUILD")) {
        (Ok(src), Ok(build)) if !src.is_empty() && !build.is_empty() => build_shim(&src, &build),
        _ => panic!(
            "the maxscale feature needs MAXSCALE_SRC (a MaxScale {EXPECTED_VERSION} source tree) and MAXSCALE_BUILD (its configured build tree)"
        ),
    }
}

fn build_shim(src: &str, build: &str) {
    let src = PathBuf::from(src);
    let build = PathBuf::from(build);
    let version_hh = build.join("include/maxscale/version.hh");
    let version = std::fs::read_to_string(&version_hh)
        .unwrap_or_else(|e| panic!("{}: {e}: MAXSCALE_BUILD must be a configured MaxScale build tree", version_hh.display()));
    if !version.contains(&format!("\"{EXPECTED_VERSION}\"")) {
        panic!("{} is not MaxScale {EXPECTED_VERSION}: MaxScale only loads modules built against its exact version", version_hh.display());
    }
    let mut cc = cc::Build::new();
    cc.cpp(true)
        .file("src/shim/shim.cc")
        .std("gnu++17")
        .include("include")
        .include(src.join("include"))
        .include(src.join("server/modules/include"))
        .include(src.join("maxutils/maxbase/include"))
        .include(src.join("maxutils/maxsql/include"))
        .include(src.join("maxutils/maxsimd/include"))
        .include(src.join("jwt-cpp/include"))
        .include(build.join("include"))
        .include(build.join("connector-c/install/include/mariadb"))
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
    cc.compile("mxsrs_shim");
    println!("cargo:rustc-cfg=mxs_shim");
}
