#!/usr/bin/env python3
"""Fuzz the XML sidecar readers: mutated bytes must give evidence or a ProductReadError, nothing else.

Every input is written to a file named like the sidecar each reader expects
and handed to the reader that :func:`rspolicy.readers.discover.sidecar_reader`
picks for it, then to each of the four readers directly (a sidecar of one
family can be named like another's). ``ProductReadError`` is the documented
refusal; any other exception is a finding.

Usage (see ``fuzz/README.md``)::

    python fuzz/fuzz_sidecars.py --seed CORPUS_DIR       # write the seed corpus
    python fuzz/fuzz_sidecars.py CORPUS_DIR -max_total_time=60 -artifact_prefix=fuzz/crashes/sidecars/
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["rspolicy"]):
    from rspolicy.errors import ProductReadError
    from rspolicy.model import Evidence
    from rspolicy.readers.cbers import read_cbers_sidecar
    from rspolicy.readers.discover import sidecar_reader
    from rspolicy.readers.gf3_sar import read_gf3_sidecar
    from rspolicy.readers.gf_optical import read_gf_optical_sidecar
    from rspolicy.readers.hy import read_hy_sidecar

# Seed writers, imported after the instrumented modules so that only the code under test is instrumented.
from rspolicy.samples.cbers import write_cbers_prdf
from rspolicy.samples.gf3 import write_gf3_meta
from rspolicy.samples.gf_optical import OpticalScene, write_sidecar
from rspolicy.samples.hdf5 import write_hy1c_czi

Reader = Callable[[Path, str], list[Evidence]]

#: Each reader with a file name of the kind it is given in real products.
READERS: tuple[tuple[str, Reader], ...] = (
    ("GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1.xml", read_gf_optical_sidecar),
    ("GF3_MYN_UFS_029108_E116.4_N39.9_20220219_L2_DH_L20006303810.meta.xml", read_gf3_sidecar),
    ("H1C_OPER_CZI_L1B_20190101T010500_20190101T010600_00001_10.xml", read_hy_sidecar),
    ("CBERS_4A_WPM_20200730_209_139_L4_BAND0.xml", read_cbers_sidecar),
)

_WORK = Path(tempfile.mkdtemp(prefix="rspolicy-fuzz-sidecars-"))


def write_seeds(corpus: Path) -> None:
    """Write sidecars from rspolicy's own sample writers (never the distributor files) as seeds."""
    corpus.mkdir(parents=True, exist_ok=True)
    write_sidecar(corpus / "gf2_pan.xml", OpticalScene())
    write_sidecar(corpus / "gf2_mss.xml", OpticalScene(bands="1,2,3,4", image_gsd="3.24", extended=True))
    write_sidecar(corpus / "sv1_pan.xml", OpticalScene(satellite="SV1-01", sensor="PAN", bands="1", image_gsd="0.5"))
    write_gf3_meta(corpus / "gf3_ufs.meta.xml")
    write_gf3_meta(corpus / "gf3_slc.meta.xml", imaging_mode="SL", product_type="SLC", product_level="1A",
                   nominal_resolution=1.0, widthspace=0.45, heightspace=0.6, polar="HH")
    write_cbers_prdf(corpus / "cbers_wpm.xml")
    write_cbers_prdf(corpus / "cbers_mux.xml", instrument="MUX", band=5, available_bands=(5, 6, 7, 8), pixel_size=16.5)
    with tempfile.TemporaryDirectory() as tmp:
        _, xml = write_hy1c_czi(Path(tmp))
        (corpus / "hy1c_czi.xml").write_bytes(xml.read_bytes())


def _check(reader: Reader, path: Path) -> None:
    try:
        evidence = reader(path, path.name)
    except ProductReadError:
        return
    if not isinstance(evidence, list) or not all(isinstance(e, Evidence) for e in evidence):
        raise AssertionError(f"{reader.__name__} returned {type(evidence).__name__}, not a list of Evidence")


def test_one_input(data: bytes) -> None:
    """One fuzz iteration: every reader on the same bytes."""
    for name, reader in READERS:
        path = _WORK / name
        path.write_bytes(data)
        try:
            chosen = sidecar_reader(path)
        except ProductReadError:
            chosen = None
        if chosen is not None:
            _check(chosen, path)
        _check(reader, path)


#: XML syntax that byte mutations rarely assemble by chance.
_XML_TOKENS = ("<?xml version=\"1.0\"?>", "<!DOCTYPE a [", "<!ENTITY e \"", "&e;", "&#x", "<![CDATA[", "]]>",
               "<!--", "-->", "xmlns=\"", "encoding=\"GB2312\"", "encoding=\"UTF-16\"", "/>", "NaN", "-1e309")


def write_dictionary(path: Path) -> None:
    """A libFuzzer dictionary: every element name of the seed sidecars, opening and closing, and XML syntax."""
    with tempfile.TemporaryDirectory() as tmp:
        write_seeds(Path(tmp))
        names = sorted({m.group(1) for seed in Path(tmp).iterdir()
                        for m in re.finditer(rb"<([A-Za-z_][\w.-]*)", seed.read_bytes())})
    entries = [f"<{n.decode()}>" for n in names] + [f"</{n.decode()}>" for n in names] + list(_XML_TOKENS)
    path.write_text("".join(f"{json.dumps(entry)}\n" for entry in entries), encoding="ascii")


def main(argv: list[str]) -> None:
    """``--seed DIR`` writes the seed corpus; anything else goes to libFuzzer (with a tag dictionary)."""
    if len(argv) == 3 and argv[1] == "--seed":
        write_seeds(Path(argv[2]))
        return
    if not any(arg.startswith("-dict=") for arg in argv):
        dictionary = _WORK / "sidecars.dict"
        write_dictionary(dictionary)
        argv = [*argv, f"-dict={dictionary}"]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
