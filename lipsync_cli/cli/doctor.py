"""`lipsync doctor`: the install checked (lipsync_cli/doctor.py), printed for a reader or as JSON."""

from __future__ import annotations

from .common import DebugOpt, JsonOpt, out, print_json, report_errors


@report_errors
def doctor(as_json: JsonOpt = False, debug: DebugOpt = False):
    """Check this install: versions, CPU and GPUs, the precision dub takes here, ffmpeg, the weights.

    Says what is missing and the one command that fixes it; downloads nothing. Exit status 1 when
    something dub needs (ffmpeg, torch, a required package) is missing."""
    from ..doctor import diagnose

    found = diagnose()
    if as_json:
        print_json(found.as_dict())
    else:
        for line in report_lines(found.sections):
            out.print(line, markup=False, highlight=False)
        out.print()
        for p in found.problems:
            out.print(f"{'needed' if p.blocks_dub else 'note'}: {p.what}: {p.detail}\n  fix: {p.fix}", markup=False)
        blocking = sum(p.blocks_dub for p in found.problems)
        out.print(f"{blocking} of the pieces `lipsync dub` needs {'is' if blocking == 1 else 'are'} missing or broken"
                  if blocking else "ffmpeg, torch and every required package are in place", markup=False)
    return found.exit_code


def report_lines(s: dict) -> list[str]:
    """The diagnosis as aligned lines, one section after another (an unreadable one says why)."""
    lines: list[str] = []

    def add(label: str, text: str) -> None:
        lines.append(f"{label:<10}{text}")

    def broken(name: str) -> bool:
        if isinstance(s.get(name), dict) and "error" in s[name]:
            add(name, f"could not be read: {s[name]['error']}")
            return True
        return False

    if not broken("package"):
        add("lipsync", f"{s['package']['version']} ({s['package']['location']})")
    if not broken("python"):
        py = s["python"]
        add("python", f"{py['version']} ({py['executable']}; requires {py['requires'] or '?'})")
        add("", py["platform"])
    if not broken("dependencies"):
        for i, d in enumerate(s["dependencies"]):
            state = d["version"] or "MISSING"
            add("packages" if i == 0 else "", f"{d['name']:<16}{state:<16}{d['requires']}{'' if d['ok'] else '  <- not met'}")
    if not broken("cpu"):
        cpu = s["cpu"]
        add("cpu", f"{cpu['model']}, {cpu['usable_cores']} of {cpu['cores']} cores usable")
        has = cpu["instructions"]
        listed = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in has.items()) if has else "unknown (not Linux)"
        limits = "".join(f", {k}={v}" for k, v in cpu["limits"].items())
        add("", f"{listed}; used: {cpu['used']}{limits}")
    if not broken("torch"):
        t = s["torch"]
        add("torch", f"{t['version']}, {t['threads']} threads, " + (f"CUDA {t['cuda_build']} build" if t["cuda_build"] else "a CPU-only build"))
        for g in t["gpus"]:
            add("gpu", f"cuda:{g['index']} {g['name']}, {g['memory_gib']} GiB, compute capability {g['capability']}")
        if not t["gpus"]:
            why = ("" if not t["cuda_build"] else
                   f" (CUDA_VISIBLE_DEVICES={t['cuda_visible_devices']})" if t["cuda_visible_devices"] is not None
                   else " visible to this CUDA build (driver?)")
            add("gpu", f"none{why}")
    if not broken("precision"):
        p = s["precision"]
        cpu_too = f"; on the CPU (--device cpu): {p['cpu_precision']}" if "cpu_precision" in p else ""
        add("dub", f"--precision auto: {p['precision']} on {p['device']} ({p['for']}){cpu_too}")
    if not broken("ffmpeg"):
        f = s["ffmpeg"]
        add("ffmpeg", f"{f['path']} (from {f['source']}): {f['version'] or 'does not run'}" if f["path"] else "not found")
    if not broken("weights"):
        w = s["weights"]
        add("weights", w["folder"])
        for e in w["entries"]:
            if e["verified"]:
                state = "verified" + (" (ships with the package)" if e["shipped"] else "")
            elif e["present"]:
                state = f"DOES NOT VERIFY: {'; '.join(e['problems'])}; fix: {e['fix']}"
            else:
                state = f"missing; fix: {e['fix']}"
            add("", f"{e['name']:<22}{state}")
    return lines
