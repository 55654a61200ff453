//! The core checks and a pre-pull against Podman's Docker-compatible API
//! (`podman system service`, started by the test bed), compared with what
//! the docker CLI says about the same service.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::time::Duration;

use common::{Dockwatch, Testbed};

#[test]
fn podman_counts_match_the_cli_and_a_prepull_works() {
    let bed = Testbed::get();
    let cli = bed.cli_at(bed.var("PODMAN_HOST"));
    let image = format!("{}/dwtest/multi:1", bed.var("REGISTRY"));
    let _ = cli.run(&["images", "-q"]); // the service answers
    // Start cold: the pre-pull must fetch.
    cli.rmi_f(&[&image]);
    let config = format!(
        "[poll]\ninterval = \"3s\"\ntimeout = \"2500ms\"\n[[daemons]]\nname = \"podman\"\nhost = \"{}\"\n[prepull]\njitter = \"0s\"\n[[prepull.images]]\nimage = \"{image}\"\n",
        bed.var("PODMAN_HOST")
    );
    let dw = Dockwatch::start(&config);
    // Podman's /info is slow on a busy machine: wait for a good poll too.
    let s = dw.wait_for("the pre-pull", Duration::from_secs(60), |s| {
        s.get(
            "dockwatch_image_pulls_total",
            &[("daemon", "podman"), ("result", "updated")],
        ) >= Some(1.0)
            && s.get("dockwatch_daemon_up", &[("daemon", "podman")]) == Some(1.0)
    });
    let d = [("daemon", "podman")];
    assert_eq!(s.get("dockwatch_daemon_up", &d), Some(1.0));
    let info = s.labels_of("dockwatch_daemon_info", &d).expect("info");
    assert_eq!(info["engine"], "podman");
    // Podman 4.3's Docker-compatible API says 1.41, as dockerd 20.10 does:
    // every request is sent with /v1.41.
    assert_eq!(info["api_version"], "1.41", "{info:?}");
    assert_eq!(info["negotiated_api_version"], "1.41", "{info:?}");
    assert_eq!(s.get("dockwatch_image_present", &d), Some(1.0));
    assert_eq!(s.get("dockwatch_prepull_ready", &d), Some(1.0));

    // Counts after the pull, against the CLI (the image listing refreshes on
    // the pull's image events, or on the next poll).
    let s = dw.wait_for("counts to settle", Duration::from_secs(20), |s| {
        s.get("dockwatch_images", &d) == Some(cli.image_ids(&[]).len() as f64)
    });
    let all = cli.image_ids(&[]);
    assert_eq!(
        s.get("dockwatch_images_size_bytes", &d),
        Some(cli.total_size(&all) as f64)
    );
    let dangling = cli.image_ids(&["dangling=true"]);
    assert!(
        !dangling.is_empty(),
        "the bed seeds a dangling image on podman"
    );
    assert_eq!(
        s.get("dockwatch_images_dangling", &d),
        Some(dangling.len() as f64)
    );
    let states = cli.container_states();
    for state in ["created", "running", "paused", "exited"] {
        assert_eq!(
            s.get(
                "dockwatch_containers",
                &[("daemon", "podman"), ("state", state)]
            ),
            Some(states.get(state).copied().unwrap_or(0) as f64),
            "containers {state}"
        );
    }
    drop(dw);

    // A re-pull is up to date.
    let dw = Dockwatch::start(&config);
    dw.wait_for("the re-pull", Duration::from_secs(60), |s| {
        s.get(
            "dockwatch_image_pulls_total",
            &[("daemon", "podman"), ("result", "up_to_date")],
        ) >= Some(1.0)
    });
    drop(dw);
    cli.rmi_f(&[&image]);
}
