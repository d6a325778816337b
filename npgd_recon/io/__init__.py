"""Files and streams in and out: ISMRMRD raw data assembled into 2-D problems (in memory, with a
file front end), acquisition geometry, DICOM series, ISMRMRD images, PNG previews, and the one
atomic-output rule every writer follows."""
