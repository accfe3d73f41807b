//! Target `centrifugo_frame`: arbitrary bytes as a Centrifugo protocol v2 client frame.
//!
//! Properties: `decode_frame` never panics and is deterministic; it refuses a frame as too
//! large exactly when it is over the limit; otherwise a frame decodes like its lines decoded one
//! by one (each at its own line number): the same commands, or the first failing line's error,
//! or too many commands exactly when the non-blank lines outnumber the limit; every decoded
//! channel is a valid ringcast channel name; every refused command's error reply and every
//! publish's push encode (a publish's data is JSON and is embedded byte for byte); the commands
//! driven through a `Session` keep it within its channel limit.
//! Input layout: u16 `frame_bytes_max` (0: the default), u8 `commands_per_frame_max` (0: the
//! default), u8 `connect_subs_max` (0: the default), then the frame.

use ringcast::channel::ChannelName;
use ringcast::wire::centrifugo::command::{
    Command, DecodeLimits, Decoded, FrameError, Request, decode_frame,
};
use ringcast::wire::centrifugo::reply::{ReplyBatch, publication_frame};
use ringcast::wire::centrifugo::session::{Expiry, Session, SessionLimits};

use super::input::Reader;

/// Checks every `centrifugo_frame` property for one input; panics on a violation.
pub fn check(data: &[u8]) {
    let mut reader = Reader::new(data);
    let defaults = DecodeLimits::default();
    let limits = DecodeLimits {
        frame_bytes_max: nonzero_or(usize::from(reader.u16()), defaults.frame_bytes_max),
        commands_per_frame_max: nonzero_or(
            usize::from(reader.u8()),
            defaults.commands_per_frame_max,
        ),
        connect_subs_max: nonzero_or(usize::from(reader.u8()), defaults.connect_subs_max),
    };
    let frame = reader.rest();
    let decoded = decode_frame(frame, &limits);
    assert_eq!(decoded, decode_frame(frame, &limits), "not deterministic");
    assert_eq!(decoded, line_by_line(frame, &limits), "frame {frame:?}");
    if let Ok(decoded) = &decoded {
        check_encodings(decoded);
        drive_session(decoded);
    }
}

fn nonzero_or(value: usize, default: usize) -> usize {
    if value == 0 { default } else { value }
}

/// What the frame must decode to, built from its lines decoded alone.
fn line_by_line(frame: &[u8], limits: &DecodeLimits) -> Result<Vec<Decoded>, FrameError> {
    if frame.len() > limits.frame_bytes_max {
        return Err(FrameError::TooLarge {
            bytes: frame.len(),
            max: limits.frame_bytes_max,
        });
    }
    let mut commands = Vec::new();
    for (index, line) in frame.split(|&byte| byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if commands.len() == limits.commands_per_frame_max {
            return Err(FrameError::TooManyCommands {
                max: limits.commands_per_frame_max,
            });
        }
        // The line alone, at the same line number (blank lines before it are skipped).
        let mut alone = vec![b'\n'; index];
        alone.extend_from_slice(line);
        let mut one = decode_frame(&alone, limits)?;
        assert_eq!(one.len(), 1, "one line, one command");
        commands.push(one.remove(0));
    }
    if commands.is_empty() {
        return Err(FrameError::Empty);
    }
    Ok(commands)
}

fn check_encodings(decoded: &[Decoded]) {
    let mut batch = ReplyBatch::new();
    for item in decoded {
        match item {
            Decoded::Refused { id, error, .. } => batch.error(*id, error.client_error()),
            Decoded::Command(Command {
                request: Request::Publish { channel, data },
                ..
            }) => {
                assert_valid_channel(channel);
                let frame = publication_frame(channel, data, Some(1)).expect("JSON data");
                let embedded = frame.windows(data.len()).any(|window| window == &data[..]);
                assert!(embedded, "data not embedded as is");
            }
            Decoded::Command(command) => check_channels(&command.request),
        }
    }
    let _ = batch.finish();
}

fn check_channels(request: &Request) {
    match request {
        Request::Subscribe(subscribe) => assert_valid_channel(&subscribe.channel),
        Request::History(history) => assert_valid_channel(&history.channel),
        Request::Unsubscribe(channel)
        | Request::Presence(channel)
        | Request::PresenceStats(channel)
        | Request::SubRefresh { channel, .. } => assert_valid_channel(channel),
        _ => {}
    }
}

fn assert_valid_channel(channel: &ChannelName) {
    assert!(ChannelName::new(channel.as_str()).as_ref() == Some(channel));
}

/// Drives the commands through a session as a server would, with no policy refusing anything.
fn drive_session(decoded: &[Decoded]) {
    let limits = SessionLimits {
        channels_max: 3,
        ..SessionLimits::default()
    };
    let mut session = Session::new(0, &limits);
    for (now_ms, item) in (0u64..).zip(decoded) {
        let Decoded::Command(command) = item else {
            continue;
        };
        if session.admit(&command.request, now_ms, &limits).is_err() {
            continue;
        }
        match &command.request {
            Request::Connect(_) => session.connected("c", Expiry::Never, now_ms, &limits),
            Request::Subscribe(subscribe) => {
                let positioned = subscribe.recover.is_some();
                session
                    .begin_subscribe(&subscribe.channel, positioned, &limits)
                    .expect("admitted subscribe");
            }
            Request::Unsubscribe(channel) => {
                session.unsubscribe(channel);
            }
            _ => {}
        }
        assert!(session.channels().count() <= limits.channels_max);
    }
}
