"""Jobs: pipelines that run on a schedule, with a history and alerts.

:mod:`.timing` says when (cron in a time zone, or an interval), :mod:`.store` keeps jobs and
their slots in the pipeline's run store, :mod:`.api` makes and changes them for the faces,
:mod:`.scheduler` runs what is due (each run in a :mod:`.runjob` process) and
:mod:`.alerts` tells someone how it went; :mod:`.registry` lists the stores that hold jobs.
"""
