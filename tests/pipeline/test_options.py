"""Which finished scenes a new run may skip: RunOptions.same_outputs against recorded fingerprints."""

from pipeline.options import RunOptions


def _recorded(options: RunOptions, *drop: str) -> dict:
    """The fingerprint a record of an earlier segpipe wrote: ``drop`` are fields it did not have."""
    fp = options.fingerprint()
    for k in drop:
        del fp[k]
    return fp


def test_a_record_from_before_the_gis_and_vector_fields_is_still_current():
    now = RunOptions(tile=256, overlap=32)
    old = _recorded(now, "co", "vectors", "vector_classes", "vector_simplify", "vector_min_area")
    assert now.same_outputs(old)  # not every scene of earlier nights redone after an upgrade


def test_asking_for_something_the_old_record_did_not_make_is_a_change():
    old = _recorded(RunOptions(tile=256), "co", "vectors")
    assert not RunOptions(tile=256, vectors=True).same_outputs(old)
    assert not RunOptions(tile=256, co={"COMPRESS": "ZSTD"}).same_outputs(old)


def test_a_record_from_before_the_validity_rule_was_made_with_any_band():
    old = _recorded(RunOptions(tile=256), "nodata_rule")
    assert not RunOptions(tile=256).same_outputs(old)  # the default is GDAL's all-bands now
    assert RunOptions(tile=256, nodata_rule="any-band").same_outputs(old)


def test_settings_that_change_no_output_are_not_compared():
    assert RunOptions(tile=256, batch_size=1, workers=1).same_outputs(RunOptions(tile=256, batch_size=8).fingerprint())
    assert not RunOptions(tile=256, blend="hann").same_outputs(RunOptions(tile=256).fingerprint())
    assert not RunOptions().same_outputs(None)
