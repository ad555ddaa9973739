{% autoescape false %}
-- Runs once, when the data directory is first initialised, as the owner in the stack's database.
{% for e in c.extensions %}
CREATE EXTENSION IF NOT EXISTS "{{ e | replace('"', '""') }}" CASCADE;
{% endfor %}
{% endautoescape %}
