"""Batches for the investigation tests: many batches of one patient, in the states a lookback meets."""

from __future__ import annotations

from datetime import timedelta

from labtrack.web.investigations import FLAGS
from tests.helpers import Lab, iso, now


class Batches:
    """Batches of the first clinic's patient MRN-1, registered afresh for each call."""

    def __init__(self, lab: Lab, patient_id: int | None = None) -> None:
        self.lab = lab
        self.patient_id = patient_id or lab.patient()["id"]

    def registered(self, tissue_source: str = "adipose") -> str:
        body = {"patient_id": self.patient_id, "tissue_source": tissue_source}
        return self.lab.ok(self.lab.post("clinic", "/batches", body))["din"]

    def at_lab(self, tissue_source: str = "adipose") -> str:
        return self.lab.bring_in(self.registered(tissue_source), tissue_source)

    def processed(self, tissue_source: str = "adipose") -> str:
        return self.lab.process(self.at_lab(tissue_source), tissue_source)

    def awaiting_release(self, tissue_source: str = "adipose") -> str:
        return self.lab.pass_qc(self.processed(tissue_source), tissue_source)

    def administered(self, tissue_source: str = "adipose") -> str:
        return self.finish(self.processed(tissue_source), tissue_source)

    def finish(self, din: str, tissue_source: str = "adipose") -> str:
        """A processed batch's QC, release, dispatch, receipt at the clinic and administration."""
        self.lab.pass_qc(din, tissue_source)
        self.lab.ok(self.lab.release(din), 200)
        self.lab.ok(self.lab.administration(self.lab.deliver(din)))
        return din


REACTION = {
    "category": "injection_site_reaction",
    "description": "Redness and swelling at two injection sites, resolved with cold packs.",
    "outcome": "recovered",
    "fatal": False,
    "life_threatening": False,
    "permanent_impairment": False,
    "intervention_required": False,
    "communicable_disease_suspected": False,
}
INFECTION = REACTION | {
    "category": "infection",
    "description": "Abscess at the injection site; incised and drained, cultures sent.",
    "outcome": "recovering",
    "intervention_required": True,
}


def reaction(**overrides) -> dict:
    """A report's body; the onset is now (after the administration just recorded)."""
    return {"onset_at": iso(now() + timedelta(milliseconds=1))} | REACTION | overrides


def investigated(lab: Lab, patient_id: int) -> tuple[str, int, int]:
    """An administered batch with a reaction reported, and a lookback naming it (and nothing else).

    The lookback's seed is the batch's centrifuge over the time it was processed, so later batches
    stay out of it and nothing is held.
    """
    made = Batches(lab, patient_id)
    start = iso(now())
    din = made.processed()
    end = iso(now())
    made.finish(din)
    reaction_id = lab.ok(lab.post("clinic", f"/batches/{din}/adverse-reactions", reaction()))["id"]
    body = {"reason": "centrifuge drift", "seed": {"kind": "equipment", "value": "CEN-1"}, "from": start, "to": end}
    lookback = lab.ok(lab.post("qa", "/lookbacks", body))
    return din, reaction_id, lookback["id"]


def reaction_form(**overrides) -> dict[str, str]:
    """A report as the page's form sends it: the flags as yes/no, the onset in the lab's zone (UTC in tests)."""
    body = reaction(**overrides)
    form = {"action": "report", "form_id": "report", "onset_at": body["onset_at"][:26]}
    form |= {name: body[name] for name in ("category", "description", "outcome")}
    return form | {flag: "yes" if body[flag] else "no" for flag in FLAGS}
