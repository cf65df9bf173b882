//! Tauri's build step: reads tauri.conf.json and the capabilities, and embeds the pages. On
//! Windows the application manifest also declares Windows 8 and later, which the native view's
//! layered child window needs (`windows-app-manifest.xml`).

fn main() {
    println!("cargo:rerun-if-changed=windows-app-manifest.xml");
    let attributes = tauri_build::Attributes::new().windows_attributes(
        tauri_build::WindowsAttributes::new()
            .app_manifest(include_str!("windows-app-manifest.xml")),
    );
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri-build: {e:#}");
    }
}
