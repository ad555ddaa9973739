// The default templates are embedded with include_dir, which cannot tell cargo about the files
// it reads: without this, editing a template would not rebuild the binary.
fn main() {
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=systemd-templates");
}
