{#- Generic data tests (dbt-core ships unique/not_null/accepted_values/relationships only). -#}

{#- The combination of columns is unique (a composite key). -#}
{% test unique_combination(model, combination_of_columns) %}
select {{ combination_of_columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Every non-NULL value lies in [min_value, max_value], up to a tolerance for rounding. -#}
{% test within_range(model, column_name, min_value=none, max_value=none, tolerance=1e-9) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and (
      {%- if min_value is not none %} {{ column_name }} < {{ min_value }} - {{ tolerance }}{% else %} 1 = 0{% endif %}
      or
      {%- if max_value is not none %} {{ column_name }} > {{ max_value }} + {{ tolerance }}{% else %} 1 = 0{% endif %}
  )
{% endtest %}
