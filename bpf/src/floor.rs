//! The overhead floor: a do-nothing program (`src/bpf/floor.bpf.c`) attached to exactly the hooks
//! the real tracer attaches at start. The hook list is not written down twice: [`tracer_hooks`]
//! opens the tracer's own object (no load, no privileges) and reads its programs' section names,
//! the same names [`crate::Tracer`] attaches by, skipping the same uprobe sections it skips (the
//! TLS uprobes are attached per OpenSSL library later; they cost nothing on plain-HTTP traffic,
//! which is what the floor is measured with). Dropping the [`Floor`] detaches every link.

use std::mem::{ManuallyDrop, MaybeUninit};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};

use crate::floor_skel::{FloorSkel, FloorSkelBuilder};
use crate::loader::step;
use crate::skel::TelegenSkelBuilder;
use crate::BpfError;

/// The hooks the real tracer attaches at start, as section names
/// (`tracepoint/<category>/<name>`).
pub fn tracer_hooks() -> Result<Vec<String>, BpfError> {
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let open = TelegenSkelBuilder::default()
        .open(&mut storage)
        .map_err(step("opening the tracer's BPF object"))?;
    Ok(open
        .open_object()
        .progs()
        .map(|p| p.section().to_string_lossy().into_owned())
        .filter(|s| !crate::loader::is_uprobe_section(s))
        .collect())
}

/// Split `tracepoint/<category>/<name>` (also `tp/...`).
fn tracepoint_of(section: &str) -> Option<(&str, &str)> {
    let rest = section
        .strip_prefix("tracepoint/")
        .or_else(|| section.strip_prefix("tp/"))?;
    let (cat, name) = rest.split_once('/')?;
    (!cat.is_empty() && !name.is_empty() && !name.contains('/')).then_some((cat, name))
}

/// The floor program attached to every tracer hook. Drop detaches everything.
pub struct Floor {
    links: Vec<(String, Link)>,
    skel: ManuallyDrop<FloorSkel<'static>>,
    // Referenced by `skel`; dropped after it (see Drop).
    _storage: Box<MaybeUninit<OpenObject>>,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor")
            .field("links", &self.links.len())
            .finish()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.links.clear();
        // SAFETY: `skel` is dropped exactly once, here, before `_storage` (which it borrows) is
        // dropped by the compiler-generated field drops that follow.
        unsafe { ManuallyDrop::drop(&mut self.skel) };
    }
}

impl Floor {
    /// Load the floor program and attach it to every hook of the real tracer.
    pub fn attach() -> Result<Floor, BpfError> {
        let hooks = tracer_hooks()?;
        let mut storage: Box<MaybeUninit<OpenObject>> = Box::new(MaybeUninit::uninit());
        // SAFETY: the skeleton borrows `storage`, a heap allocation that never moves and that
        // Floor drops only after the skeleton (see `impl Drop for Floor`).
        let storage_ref: &'static mut MaybeUninit<OpenObject> =
            unsafe { &mut *(storage.as_mut() as *mut MaybeUninit<OpenObject>) };
        let open = FloorSkelBuilder::default()
            .open(storage_ref)
            .map_err(step("opening the floor BPF object"))?;
        let skel = open
            .load()
            .map_err(step("loading the floor program (verifier)"))?;
        let mut floor = Floor {
            links: Vec::with_capacity(hooks.len()),
            skel: ManuallyDrop::new(skel),
            _storage: storage,
        };
        for hook in hooks {
            let (cat, name) = tracepoint_of(&hook).ok_or_else(|| BpfError::Attach {
                hook: hook.clone(),
                source: libbpf_rs::Error::from_raw_os_error(libc::EINVAL),
            })?;
            let link = floor
                .skel
                .progs
                .tg_floor
                .attach_tracepoint(libbpf_rs::TracepointCategory::Custom(cat.to_string()), name)
                .map_err(|source| BpfError::Attach {
                    hook: hook.clone(),
                    source,
                })?;
            floor.links.push((hook, link));
        }
        Ok(floor)
    }

    /// The hooks attached (the tracer's section names).
    pub fn hooks(&self) -> Vec<&str> {
        self.links.iter().map(|(h, _)| h.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_sections() {
        assert_eq!(
            tracepoint_of("tracepoint/syscalls/sys_exit_read"),
            Some(("syscalls", "sys_exit_read"))
        );
        assert_eq!(
            tracepoint_of("tp/sched/sched_process_exec"),
            Some(("sched", "sched_process_exec"))
        );
        assert_eq!(tracepoint_of("uprobe/x"), None);
        assert_eq!(tracepoint_of("tracepoint/a"), None);
        assert_eq!(tracepoint_of("tracepoint/a/b/c"), None);
    }

    #[test]
    fn tracer_hooks_are_read_from_the_tracer_object() {
        // Opening needs no privileges; the list must hold the hooks the README names.
        let hooks = tracer_hooks().unwrap_or_else(|e| panic!("{e}"));
        for h in [
            "tracepoint/syscalls/sys_exit_accept4",
            "tracepoint/syscalls/sys_enter_close",
            "tracepoint/syscalls/sys_exit_write",
        ] {
            assert!(hooks.iter().any(|x| x == h), "{h} missing from {hooks:?}");
        }
        assert!(
            hooks.iter().all(|h| tracepoint_of(h).is_some()),
            "{hooks:?}"
        );
    }
}
