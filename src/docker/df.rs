//! Decoding `GET /system/df`, in both shapes daemons send: the classic
//! lists (`LayersSize`, `Images`, `Containers`, `Volumes`, `BuildCache`;
//! dockerd up to API 1.51 and Podman) and the newer summaries
//! (`ImageUsage`, `ContainerUsage`, ...), summed the way `docker system df`
//! sums them. Pure: no I/O.

use serde::Deserialize;

use crate::labels::DISK_TYPES;

/// Bytes used and reclaimable for one kind of object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub reclaimable: u64,
}

/// What `/system/df` says, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub images: Usage,
    pub containers: Usage,
    pub volumes: Usage,
    pub build_cache: Usage,
    /// Images no container uses (not the same as dangling).
    pub images_unused: u64,
}

impl DiskUsage {
    /// (type label, usage) in a fixed order.
    pub fn by_type(&self) -> [(&'static str, Usage); 4] {
        let [images, containers, volumes, build_cache] = DISK_TYPES;
        [
            (images, self.images),
            (containers, self.containers),
            (volumes, self.volumes),
            (build_cache, self.build_cache),
        ]
    }
}

fn pos(n: Option<i64>) -> u64 {
    // -1 is the daemon's "not computed".
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// Sums byte counts, saturating: a hostile answer cannot wrap a total
/// around to a small number.
fn sum(bytes: impl Iterator<Item = u64>) -> u64 {
    bytes.fold(0, u64::saturating_add)
}

impl Usage {
    /// Adds one object of `size` bytes, reclaimable or not.
    fn add(&mut self, size: u64, reclaimable: bool) {
        self.size = self.size.saturating_add(size);
        if reclaimable {
            self.reclaimable = self.reclaimable.saturating_add(size);
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Df {
    layers_size: Option<i64>,
    images: Option<Vec<DfImage>>,
    containers: Option<Vec<DfContainer>>,
    volumes: Option<Vec<DfVolume>>,
    build_cache: Option<Vec<DfBuildCache>>,
    // The Engine API 1.52 names; the plural spelling some documents use is
    // taken too.
    #[serde(alias = "ImagesUsage")]
    image_usage: Option<Summary>,
    #[serde(alias = "ContainersUsage")]
    container_usage: Option<Summary>,
    #[serde(alias = "VolumesUsage")]
    volume_usage: Option<Summary>,
    #[serde(alias = "BuildCachesUsage")]
    build_cache_usage: Option<Summary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DfImage {
    size: Option<i64>,
    shared_size: Option<i64>,
    containers: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DfContainer {
    size_rw: Option<i64>,
    state: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DfVolume {
    usage_data: Option<VolumeUsageData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeUsageData {
    size: Option<i64>,
    ref_count: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DfBuildCache {
    size: Option<i64>,
    in_use: Option<bool>,
    shared: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Summary {
    total_size: Option<i64>,
    reclaimable: Option<i64>,
    active_count: Option<i64>,
    total_count: Option<i64>,
}

impl Summary {
    fn usage(&self) -> Usage {
        Usage {
            size: pos(self.total_size),
            reclaimable: pos(self.reclaimable),
        }
    }
}

/// Decodes a `/system/df` answer of either shape.
pub fn parse(body: &[u8]) -> Result<DiskUsage, String> {
    let df: Df =
        serde_json::from_slice(body).map_err(|e| format!("not a /system/df answer: {e}"))?;
    let mut out = DiskUsage::default();
    if let Some(images) = &df.images {
        // As `docker system df`: what the images hold in layers, less what
        // the images in use need for themselves.
        // Podman always says LayersSize 0: then the images' own sizes.
        let total = match df.layers_size {
            Some(n) if n > 0 => pos(Some(n)),
            _ => sum(images.iter().map(|i| pos(i.size))),
        };
        let used = sum(images
            .iter()
            .filter(|i| i.containers.unwrap_or(0) > 0)
            .filter(|i| i.size.unwrap_or(-1) >= 0 && i.shared_size.unwrap_or(-1) >= 0)
            .map(|i| pos(i.size).saturating_sub(pos(i.shared_size))));
        out.images = Usage {
            size: total,
            reclaimable: total.saturating_sub(used),
        };
        out.images_unused = images
            .iter()
            .filter(|i| i.containers.unwrap_or(0) <= 0)
            .count() as u64;
    } else if let Some(s) = &df.image_usage {
        out.images = s.usage();
        out.images_unused = pos(s.total_count).saturating_sub(pos(s.active_count));
    }
    if let Some(containers) = &df.containers {
        for c in containers {
            let running = c.state.as_deref() == Some("running");
            out.containers.add(pos(c.size_rw), !running);
        }
    } else if let Some(s) = &df.container_usage {
        out.containers = s.usage();
    }
    if let Some(volumes) = &df.volumes {
        for v in volumes.iter().filter_map(|v| v.usage_data.as_ref()) {
            out.volumes.add(pos(v.size), v.ref_count.unwrap_or(0) == 0);
        }
    } else if let Some(s) = &df.volume_usage {
        out.volumes = s.usage();
    }
    if let Some(cache) = &df.build_cache {
        for b in cache.iter().filter(|b| !b.shared.unwrap_or(false)) {
            out.build_cache.add(pos(b.size), !b.in_use.unwrap_or(false));
        }
    } else if let Some(s) = &df.build_cache_usage {
        out.build_cache = s.usage();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(size: u64, reclaimable: u64) -> Usage {
        Usage { size, reclaimable }
    }

    #[test]
    fn classic_shape_as_docker_system_df_counts_it() {
        let body = br#"{
          "LayersSize": 1000,
          "Images": [
            {"Id":"a","Size":600,"SharedSize":100,"Containers":2},
            {"Id":"b","Size":300,"SharedSize":100,"Containers":0},
            {"Id":"c","Size":200,"SharedSize":-1,"Containers":0}
          ],
          "Containers": [
            {"Id":"x","SizeRw":10,"State":"running"},
            {"Id":"y","SizeRw":20,"State":"exited"}
          ],
          "Volumes": [
            {"Name":"v1","UsageData":{"Size":50,"RefCount":1}},
            {"Name":"v2","UsageData":{"Size":70,"RefCount":0}},
            {"Name":"v3","UsageData":{"Size":-1,"RefCount":0}}
          ],
          "BuildCache": [
            {"ID":"b1","Size":5,"InUse":false,"Shared":false},
            {"ID":"b2","Size":7,"InUse":true,"Shared":false},
            {"ID":"b3","Size":9,"InUse":false,"Shared":true}
          ]
        }"#;
        let d = parse(body).expect("parses");
        assert_eq!(d.images, usage(1000, 500));
        assert_eq!(d.images_unused, 2);
        assert_eq!(d.containers, usage(30, 20));
        assert_eq!(d.volumes, usage(120, 70));
        assert_eq!(d.build_cache, usage(12, 5));
    }

    #[test]
    fn summary_shape() {
        let body =
            br#"{"ImageUsage":{"TotalSize":900,"Reclaimable":400,"ActiveCount":1,"TotalCount":3},
          "ContainerUsage":{"TotalSize":30,"Reclaimable":20},
          "VolumeUsage":{"TotalSize":0,"Reclaimable":0},
          "BuildCacheUsage":{"TotalSize":12,"Reclaimable":5}}"#;
        let d = parse(body).expect("parses");
        assert_eq!(d.images, usage(900, 400));
        assert_eq!(d.images_unused, 2);
        assert_eq!(d.build_cache, usage(12, 5));
    }

    use crate::config::files::fixture;

    /// Docker 29 (API 1.52) sends only the summaries; a negative size (the
    /// containerd store's "reclaimable" can be) is exported as 0, never as
    /// a wrapped-around u64.
    #[test]
    fn api_1_52_summaries() {
        let d = parse(&fixture("api-1.52-system-df.json")).expect("parses");
        assert_eq!(
            d.by_type().map(|(t, u)| (t, u.size, u.reclaimable)),
            [
                ("images", 3_012_345, 1_504_231),
                ("containers", 12_288, 8192),
                ("volumes", 4096, 4096),
                ("build_cache", 2048, 2048),
            ]
        );
        assert_eq!(d.images_unused, 3);
        let n = parse(&fixture("api-1.52-system-df-negative.json")).expect("parses");
        assert_eq!((n.images.size, n.images.reclaimable), (1_048_576, 0));
        assert_eq!((n.build_cache.size, n.build_cache.reclaimable), (0, 0));
        assert_eq!(n.images_unused, 1);
        let plural = br#"{"ImagesUsage":{"TotalSize":7,"Reclaimable":3}}"#;
        assert_eq!(parse(plural).expect("parses").images.size, 7);
    }

    #[test]
    fn podman_and_dockerd_captures() {
        let d = parse(include_bytes!("../../tests/streams/podman-df.json")).expect("podman");
        assert!(d.images.size > 0, "{d:?}");
        let d =
            parse(include_bytes!("../../tests/streams/df-dockerd-20.10.json")).expect("dockerd");
        assert!(d.images.size > 0, "{d:?}");
    }

    /// Docker 26 on the containerd image store (the test bed's daemon C
    /// with its seeds): `LayersSize` counts the unpacked snapshots only,
    /// while each image's `Size` is its snapshots plus its compressed
    /// content, so images in use can add up to more than `LayersSize`.
    #[test]
    fn containerd_store_as_docker_system_df_counts_it() {
        let d = parse(include_bytes!(
            "../../tests/streams/docker-26-containerd-df.json"
        ))
        .expect("df");
        // docker system df: Images 18.19MB, reclaimable 2.849MB (15%).
        assert_eq!(
            d.images,
            Usage {
                size: 18_190_336,
                reclaimable: 18_190_336 - 15_341_203
            }
        );
        assert_eq!(d.images_unused, 4);
        // Containers 20.48kB, reclaimable 12.29kB: 5 of 4096 bytes, 2 running.
        assert_eq!(d.containers, usage(20_480, 12_288));
        assert_eq!(d.volumes, Usage::default());
        assert_eq!(d.build_cache, Usage::default());
    }

    /// One image, used by four containers: `docker system df` prints its
    /// reclaimable size as -9.342e+05B (-43%), 2,129,920 - 3,064,084.
    /// dockwatch exports 0: a byte count is never negative, nothing can be
    /// pruned from an image in use, and a u64 must not wrap around.
    #[test]
    fn containerd_store_negative_reclaimable_is_zero() {
        let d = parse(include_bytes!(
            "../../tests/streams/docker-26-containerd-df-negative.json"
        ))
        .expect("df");
        assert_eq!(d.images, usage(2_129_920, 0));
        assert_eq!(d.images_unused, 0);
        assert_eq!(d.containers, usage(16_384, 16_384));
    }

    /// Sizes near `i64::MAX` add up without wrapping around, and negative
    /// ones (the daemon's "unknown") count as 0.
    #[test]
    fn huge_and_negative_sizes_neither_wrap_nor_go_below_zero() {
        let max = i64::MAX;
        let body = format!(
            r#"{{"LayersSize":-5,"Images":[{{"Size":{max},"SharedSize":0,"Containers":0}},{{"Size":{max},"SharedSize":0,"Containers":0}},{{"Size":-1,"SharedSize":-1,"Containers":-1}}],
              "Containers":[{{"SizeRw":{max},"State":"exited"}},{{"SizeRw":{max},"State":"exited"}},{{"SizeRw":-7,"State":"running"}}],
              "Volumes":[{{"UsageData":{{"Size":{max},"RefCount":0}}}},{{"UsageData":{{"Size":{max},"RefCount":0}}}}],
              "BuildCache":[{{"Size":{max},"InUse":false}},{{"Size":{max},"InUse":false}}]}}"#
        );
        let d = parse(body.as_bytes()).expect("parses");
        let twice = 2 * u64::try_from(max).expect("positive");
        for (typ, u) in d.by_type() {
            assert_eq!(
                u,
                Usage {
                    size: twice,
                    reclaimable: twice
                },
                "{typ}"
            );
        }
        let summary =
            br#"{"ImageUsage":{"TotalSize":-3,"Reclaimable":-9,"ActiveCount":5,"TotalCount":2}}"#;
        let d = parse(summary).expect("parses");
        assert_eq!(d.images, Usage::default());
        assert_eq!(d.images_unused, 0);
    }

    #[test]
    fn nulls_and_garbage() {
        assert_eq!(
            parse(br#"{"Images":null,"Containers":null,"Volumes":null,"BuildCache":null}"#),
            Ok(DiskUsage::default())
        );
        assert!(parse(b"[]").is_err());
        assert!(parse(b"{").is_err());
    }
}
