//! Command names, parsed once at the edge into an enum (PROTOCOL.md §3, §7.2).

macro_rules! commands {
    ($($variant:ident => $name:literal,)+) => {
        /// A command of the cluster or local protocol. Unknown names are kept as `Other`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Command {
            $($variant,)+
            Other(String),
        }

        impl Command {
            pub fn parse(name: &str) -> Command {
                match name {
                    $($name => Command::$variant,)+
                    other => Command::Other(other.to_string()),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(Command::$variant => $name,)+
                    Command::Other(name) => name,
                }
            }
        }
    };
}

impl Command {
    /// Commands that only ever answer a request (`ok`, `err`, `ok-m`, `ok-c`, `error`). One that
    /// matches no request of ours (a duplicate, or the late reply to a request that expired) is
    /// dropped, never answered: answering it with `err` would start two nodes answering each
    /// other's errors for ever.
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Command::Ok | Command::Err | Command::OkM | Command::OkC
        ) || matches!(self, Command::Other(name) if name == "error")
    }
}

commands! {
    Ok => "ok",
    Err => "err",
    OkM => "ok-m",
    OkC => "ok-c",
    Hello => "hello",
    Echo => "echo",
    EchoC => "echo-c",
    EchoM => "echo-m",
    NewStr => "new_str",
    StrUpd => "str_upd",
    ErrStr => "err_str",
    NewFile => "new_file",
    FileUpd => "file_upd",
    FileEnd => "file_end",
    CancelTask => "cancel_task",
    GetConfig => "get_config",
    GetNodes => "get_nodes",
    GetHealth => "get_health",
    GetHash => "get_hash",
    ControlRes => "control_res",
    SynIWMP => "syn_i_w_m_p",
    SynIWM => "syn_i_w_m",
    SynIWME => "syn_i_w_m_e",
    SynIWMR => "syn_i_w_m_r",
    SynEWM => "syn_e_w_m",
    SynEWME => "syn_e_w_m_e",
    SynAWMP => "syn_a_w_m_p",
    SynAWM => "syn_a_w_m",
    SynMCOk => "syn_m_c_ok",
    SynMC => "syn_m_c",
    SynMCE => "syn_m_c_e",
    SynMCR => "syn_m_c_r",
    SynMAE => "syn_m_a_e",
    SynMAErr => "syn_m_a_err",
    SynGMW => "syn_g_m_w",
    SynGMWC => "syn_g_m_w_c",
    SynWGC => "syn_w_g_c",
    SynWGE => "syn_w_g_e",
    SynWGCE => "syn_wgc_e",
    SynWGErr => "syn_w_g_err",
    SynWGCErr => "syn_wgc_err",
    Dapi => "dapi",
    DapiRes => "dapi_res",
    DapiErr => "dapi_err",
    DapiFwd => "dapi_fwd",
    SendSync => "sendsync",
    SendAsync => "sendasync",
    SendSynRes => "sendsyn_res",
    SendSynErr => "sendsyn_err",
    SendRReload => "sendrreload",
    GetAgents => "get_agents",
    SendFile => "send_file",
    SendFRes => "send_f_res",
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["syn_i_w_m_p", "echo-c", "get_nodes", "sendsyn_res", "ok-m"] {
            assert_eq!(Command::parse(name).as_str(), name);
            assert!(!matches!(Command::parse(name), Command::Other(_)));
        }
        assert_eq!(Command::parse("bogus"), Command::Other("bogus".into()));
    }
}
