-- A change of a run in progress that a follower can apply without reading the run says what it is: a JSON
-- object with the run, the length of its text in bytes, and its status, step and progress. That is every
-- flush of the text (every 250 ms while the reply is written) and every change of step or progress. An
-- instance following the run (engine::relay) whose tokens already brought that much text publishes the
-- progress and reads nothing. Any other change — a new text version, the scene, the end — still sends the
-- bare run id, and the follower reads the run.
CREATE OR REPLACE FUNCTION chat_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('queued', 'responding', 'analyzing', 'imaging')
       AND OLD.text_epoch IS NOT DISTINCT FROM NEW.text_epoch
       AND OLD.state_after IS NOT DISTINCT FROM NEW.state_after
       AND octet_length(NEW.step) <= 500 THEN
        PERFORM pg_notify('chat_run_changed', json_build_object(
            'run', NEW.id,
            'text_bytes', octet_length(NEW.partial_text),
            'status', NEW.status,
            'step', NEW.step,
            'progress', NEW.progress)::text);
    ELSE
        PERFORM pg_notify('chat_run_changed', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
