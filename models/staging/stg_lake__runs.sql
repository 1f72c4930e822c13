select
    run_id,
    command,
    params,
    started_at,
    finished_at,
    status,
    version,
    units
from {{ source('lake', 'runs') }}
