//! The app's file-transfer commands: send a file (a path from the page, a dialog, or files dropped
//! on the window), get one of the remote computer's, stop one, and the folder fetched files go
//! into (remembered in the settings; the Downloads folder until the technician picks one). Each
//! transfer's progress reaches the page with the session's other events.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tauri::State;
use tauri_plugin_dialog::DialogExt;
use technician::Command;

use super::{command, App, Failure};

/// Transfer ids, unique for the app's life (a session's are unique within it).
static NEXT: AtomicU32 = AtomicU32::new(1);

fn next_id() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Sends the file at `path` to the remote computer; the transfer's id.
pub async fn send(app: &App, path: PathBuf) -> Result<u32, Failure> {
    if !path.is_file() {
        return Err(Failure::new(
            "INPUT",
            format!("{} is not a file this app can read.", path.display()),
        ));
    }
    let id = next_id();
    command(
        app,
        Command::SendFile {
            transfer_id: id,
            path,
        },
    )
    .await?;
    Ok(id)
}

/// The folder fetched files go into.
pub async fn folder(app: &App) -> PathBuf {
    app.inner
        .lock()
        .await
        .settings
        .files_folder
        .clone()
        .unwrap_or_else(technician::default_files_folder)
}

#[tauri::command]
pub async fn send_file(app: State<'_, Arc<App>>, path: String) -> Result<u32, Failure> {
    send(&app, PathBuf::from(path)).await
}

/// Asks for a file with the platform's dialog, then sends it; `None` when the technician closed
/// the dialog.
#[tauri::command]
pub async fn pick_and_send_file(
    handle: tauri::AppHandle,
    app: State<'_, Arc<App>>,
) -> Result<Option<u32>, Failure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    handle
        .dialog()
        .file()
        .set_title("Send a file to the remote computer")
        .pick_file(move |f| {
            let _ = tx.send(f);
        });
    let Some(picked) = rx.await.ok().flatten() else {
        return Ok(None);
    };
    let path = picked
        .into_path()
        .map_err(|e| Failure::new("INPUT", format!("That file cannot be sent: {e}")))?;
    send(&app, path).await.map(Some)
}

/// Fetches the remote computer's file at `remote_path` into the files folder; the transfer's id.
#[tauri::command]
pub async fn get_file(app: State<'_, Arc<App>>, remote_path: String) -> Result<u32, Failure> {
    let remote_path = remote_path.trim().to_owned();
    if remote_path.is_empty() {
        return Err(Failure::new(
            "INPUT",
            "Type the file's path on the remote computer.",
        ));
    }
    let into = folder(&app).await;
    let id = next_id();
    command(
        &app,
        Command::GetFile {
            transfer_id: id,
            remote_path,
            into: Some(into),
        },
    )
    .await?;
    Ok(id)
}

#[tauri::command]
pub async fn cancel_transfer(app: State<'_, Arc<App>>, id: u32) -> Result<(), Failure> {
    command(&app, Command::CancelTransfer(id)).await
}

/// Takes the file the remote computer offered unasked into the files folder.
#[tauri::command]
pub async fn take_file(app: State<'_, Arc<App>>, id: u32) -> Result<(), Failure> {
    let into = folder(&app).await;
    command(
        &app,
        Command::TakeFile {
            transfer_id: id,
            into: Some(into),
        },
    )
    .await
}

/// Declines the file the remote computer offered unasked: nothing is written.
#[tauri::command]
pub async fn decline_file(app: State<'_, Arc<App>>, id: u32) -> Result<(), Failure> {
    command(&app, Command::DeclineFile(id)).await
}

#[tauri::command]
pub async fn files_folder(app: State<'_, Arc<App>>) -> Result<String, Failure> {
    Ok(folder(&app).await.display().to_string())
}

/// Makes `path` the folder fetched files go into (created if missing) and remembers it.
#[tauri::command]
pub async fn set_files_folder(app: State<'_, Arc<App>>, path: String) -> Result<String, Failure> {
    let dir = PathBuf::from(path.trim());
    if dir.as_os_str().is_empty() || std::fs::create_dir_all(&dir).is_err() || !dir.is_dir() {
        return Err(Failure::new(
            "INPUT",
            format!("{} is not a folder this app can write to.", dir.display()),
        ));
    }
    let mut inner = app.inner.lock().await;
    inner.settings.files_folder = Some(dir.clone());
    let settings = inner.settings.clone();
    drop(inner);
    app.save(&settings);
    Ok(dir.display().to_string())
}

/// Asks for the files folder with the platform's dialog; the new folder, or `None`.
#[tauri::command]
pub async fn pick_files_folder(
    handle: tauri::AppHandle,
    app: State<'_, Arc<App>>,
) -> Result<Option<String>, Failure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    handle
        .dialog()
        .file()
        .set_title("Save files from remote computers in")
        .pick_folder(move |f| {
            let _ = tx.send(f);
        });
    let Some(picked) = rx.await.ok().flatten() else {
        return Ok(None);
    };
    let path = picked
        .into_path()
        .map_err(|e| Failure::new("INPUT", format!("That folder cannot be used: {e}")))?;
    set_files_folder(app, path.display().to_string())
        .await
        .map(Some)
}
