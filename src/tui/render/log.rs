//! The engine's tracing output (warnings such as dropped frames), via tui-logger.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::Paragraph;
use tui_logger::TuiLoggerWidget;

use super::pane_block;
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if app.log_lines == 0 {
        let block = pane_block(" Log (F3 hides) ", false, theme);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let text = "empty: the console's warnings and errors appear here";
        frame.render_widget(Paragraph::new(Span::styled(text, theme.muted())), inner);
        return;
    }
    let widget = TuiLoggerWidget::default()
        .block(pane_block(" Log (F3 hides) ", false, theme))
        .style_error(theme.fg(theme.error))
        .style_warn(theme.fg(theme.warning))
        .style_info(theme.fg(theme.foreground))
        .style_debug(theme.muted())
        .style_trace(theme.muted())
        .output_target(false)
        .output_file(false)
        .output_line(false);
    frame.render_widget(widget, area);
}
