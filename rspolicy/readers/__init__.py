"""Readers: turn the files of a product into evidence.

Each reader takes a local file and the *source label* to put on its evidence
(the display path: ``dir/scene.tiff`` or ``package.tar.gz!member.tiff``) and
returns a list of :class:`~rspolicy.model.Evidence`. A reader raises
:class:`~rspolicy.errors.ProductReadError` naming the file when it cannot read
it; the discovery stage turns that into a blocked product, never a crash.
"""
