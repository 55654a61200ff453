//! The landing page in a real headless Chromium: it loads with no console
//! errors and shows a running pull's layers, drawn by its script from /pulls.

mod common;

use common::{Dockwatch, Testbed, Thaw, kill};

#[test]
fn landing_page_shows_a_running_pull_in_chromium() {
    let bed = Testbed::get();
    let big = format!("{}/dwtest/big:1", bed.var("REGISTRY"));
    bed.cli_a().rmi_f(&[&big]);
    let dw = Dockwatch::start(&format!(
        "{}[prepull]\ninterval = \"1h\"\njitter = \"0s\"\nstall_timeout = \"2m\"\n[[prepull.images]]\nimage = \"{big}\"\n",
        bed.daemon_a("a")
    ));
    // Freeze the registry once the pull has listed its layers, so the pull
    // stays running while the browser looks.
    dw.wait_for_layers("a", &big);
    let pid = bed.registry_pid().expect("REGISTRY_PID");
    kill(pid, "STOP");
    let thaw = Thaw(pid);

    let dom = common::chromium(
        &["--dump-dom"],
        &format!("http://127.0.0.1:{}/", dw.port),
        5000,
    );
    drop(thaw);
    assert!(dom.contains(&big), "the image is not shown:\n{dom}");
    // The dump holds the page's script too, whose source has the word
    // "pulling": look for the element the script draws.
    assert!(
        dom.contains("<span class=\"running\"> pulling,"),
        "no running pull shown:\n{dom}"
    );
    let rows = dom.matches("data-layer=").count();
    let want = bed.var("IMAGE_BIG_LAYERS").split(',').count();
    assert_eq!(rows, want, "expected a row per layer:\n{dom}");
    assert!(dom.contains("<progress"), "no progress bars:\n{dom}");
    drop(dw);
    bed.cli_a().rmi_f(&[&big]);
}
