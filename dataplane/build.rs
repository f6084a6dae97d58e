//! Compiles the ISA-L gzip shim (`src/export/isal_gzip.c`) and links Debian's libisal
//! (`apt-get install libisal-dev`; scripts/setup.sh installs it).

fn main() {
    println!("cargo:rerun-if-changed=src/export/isal_gzip.c");
    if !std::path::Path::new("/usr/include/isa-l/igzip_lib.h").exists() {
        println!(
            "cargo:warning=isa-l/igzip_lib.h not found in /usr/include: apt-get install libisal-dev (scripts/setup.sh does)"
        );
    }
    cc::Build::new()
        .file("src/export/isal_gzip.c")
        .warnings(true)
        .extra_warnings(true)
        .compile("telegen_isal_gzip");
    println!("cargo:rustc-link-lib=isal");
}
