"""The embedded synthetic city: a procedurally rendered place-recognition benchmark.

* :mod:`wakd.synth.world`    the city: streets, buildings with seeded facade styles, street lamps
* :mod:`wakd.synth.render`   a vectorised numpy ray caster (pinhole camera, day/sunset/night)
* :mod:`wakd.synth.capture`  Pittsburgh-style panoramas, queries and geographic splits
* :mod:`wakd.synth.generate` parallel rendering to the Pittsburgh ``.mat`` + JPEG layout
* :mod:`wakd.synth.preview`  a contact sheet for people
* :mod:`wakd.synth.baseline` simple global descriptors (thumbnail, colour histogram) as signal checks
"""
