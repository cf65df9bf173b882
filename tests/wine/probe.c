/* Test fixture for the Windows end-to-end test, never shipped: a Win32 program that shows known
 * text in a large font in an edit box filling its window, and writes the box's text to the file
 * named on its command line whenever it changes (and once at start, which tells the test that it
 * is up). Keys the technician types through the streamer land in the box, so the file shows them. */
#include <windows.h>
#include <stdio.h>

static const wchar_t *out_path;
static HWND edit;

static void save(void)
{
    wchar_t text[4096];
    char utf8[16384];
    int n = GetWindowTextW(edit, text, 4096);
    int m = WideCharToMultiByte(CP_UTF8, 0, text, n, utf8, sizeof utf8, NULL, NULL);
    wchar_t tmp[MAX_PATH];
    swprintf(tmp, MAX_PATH, L"%ls.tmp", out_path);
    FILE *f = _wfopen(tmp, L"wb");
    if (!f)
        return;
    fwrite(utf8, 1, m, f);
    fclose(f);
    MoveFileExW(tmp, out_path, MOVEFILE_REPLACE_EXISTING);
}

static LRESULT CALLBACK proc(HWND w, UINT msg, WPARAM wp, LPARAM lp)
{
    switch (msg) {
    case WM_COMMAND:
        if (HIWORD(wp) == EN_CHANGE)
            save();
        return 0;
    case WM_SIZE:
        MoveWindow(edit, 0, 0, LOWORD(lp), HIWORD(lp), TRUE);
        return 0;
    case WM_DESTROY:
        PostQuitMessage(0);
        return 0;
    }
    return DefWindowProcW(w, msg, wp, lp);
}

int WINAPI wWinMain(HINSTANCE inst, HINSTANCE prev, PWSTR cmd, int show)
{
    (void)prev;
    (void)show;
    out_path = cmd;
    WNDCLASSW wc = {0};
    wc.lpfnWndProc = proc;
    wc.hInstance = inst;
    wc.lpszClassName = L"WineProbe";
    RegisterClassW(&wc);
    int sw = GetSystemMetrics(SM_CXSCREEN), sh = GetSystemMetrics(SM_CYSCREEN);
    HWND w = CreateWindowExW(WS_EX_TOPMOST, L"WineProbe", L"Probe", WS_POPUP | WS_VISIBLE, 0, 0,
                             sw, sh, NULL, NULL, inst, NULL);
    edit = CreateWindowExW(0, L"EDIT", L"PROBE 4217", WS_CHILD | WS_VISIBLE | ES_MULTILINE, 0, 0,
                           sw, sh, w, NULL, inst, NULL);
    HFONT font = CreateFontW(-140, 0, 0, 0, FW_BOLD, 0, 0, 0, DEFAULT_CHARSET, 0, 0,
                             ANTIALIASED_QUALITY, 0, L"Tahoma");
    SendMessageW(edit, WM_SETFONT, (WPARAM)font, TRUE);
    SetForegroundWindow(w);
    SetFocus(edit);
    SendMessageW(edit, EM_SETSEL, 10, 10);
    save();
    MSG m;
    while (GetMessageW(&m, NULL, 0, 0) > 0) {
        TranslateMessage(&m);
        DispatchMessageW(&m);
    }
    return 0;
}
