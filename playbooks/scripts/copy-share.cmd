@echo off
rem ===========================================================================
rem copy-share.cmd [verify] SHARE [SHARE...]
rem
rem Mirrors DATA\SHARE from old-sbs to the same path on new-sbs with data,
rem attributes, timestamps, NTFS permissions, owner and auditing (/COPYALL),
rem in backup mode (/ZB) so that files the administrator cannot read are still
rem copied. Installed as C:\mig\bin\copy-share.cmd on new-sbs and run through
rem job.cmd (reading old-sbs's administrative share needs the task's
rem credentials). DATA (the var data_root, e.g. D:\Data) and old-sbs's name
rem come from C:\mig\bin\customer.cmd (the step customer-settings).
rem
rem Robocopy XP010 (Windows Server 2003 Resource Kit Tools). Its exit code is a
rem bitmap (ss64 robocopy exit codes; KB 2646535):
rem   1 files copied, 2 extra files or folders, 4 mismatches,
rem   8 some files or folders could not be copied, 16 fatal error.
rem   0-7 is success; 8 and above means at least one failure.
rem The codes of several shares are OR-ed, so the result keeps every bit.
rem
rem "verify" lists (/L) instead of copying and succeeds only when robocopy has
rem nothing left to do for every share: the check of the copy steps.
rem Logs: C:\mig\logs\copy-SHARE.log and C:\mig\logs\verify-SHARE.log.
rem ===========================================================================
setlocal
if not exist C:\mig\bin\customer.cmd (
    echo C:\mig\bin\customer.cmd is missing: run the step customer-settings first. 1>&2
    exit /b 1
)
call C:\mig\bin\customer.cmd
rem D:\Data on old-sbs is \\OLD\D$\Data.
set SOURCE_ROOT=\\%MIG_OLD%\%MIG_DATA::=$%
set TARGET_ROOT=%MIG_DATA%
set LOGS=C:\mig\logs
set MODE=copy
if /i "%~1"=="verify" (
    set MODE=verify
    shift
)
if "%~1"=="" goto usage
if not exist "%LOGS%" mkdir "%LOGS%"
set ALL=0

:next
if "%~1"=="" goto done
call :one "%~1"
set /a "ALL|=RC"
shift
goto next

:done
if /i "%MODE%"=="copy" (
    echo robocopy exit codes combined: %ALL%. 0-7 is success, 8 or more: some files were not copied.
    exit /b %ALL%
)
if "%ALL%"=="0" (
    echo Nothing left to copy: the shares on new-sbs match old-sbs.
    exit /b 0
)
echo Differences remain, combined robocopy /L exit code %ALL%: see the verify logs in %LOGS%. 1>&2
exit /b 1

:one
set SHARE=%~1
if /i "%MODE%"=="verify" (
    set LOG=%LOGS%\verify-%SHARE%.log
    set LIST=/L
) else (
    set LOG=%LOGS%\copy-%SHARE%.log
    set LIST=
)
echo %date% %time% %MODE% %SOURCE_ROOT%\%SHARE% to %TARGET_ROOT%\%SHARE%
robocopy "%SOURCE_ROOT%\%SHARE%" "%TARGET_ROOT%\%SHARE%" /MIR /COPYALL /ZB /R:1 /W:1 /NP %LIST% /LOG:"%LOG%" /XD "System Volume Information" RECYCLER
set RC=%errorlevel%
rem The log keeps every file; print only errors and the summary.
findstr /c:"ERROR " /c:"   Dirs :" /c:"  Files :" /c:"  Bytes :" /c:"  Ended :" "%LOG%"
echo %SHARE%: robocopy exit code %RC%
goto :eof

:usage
echo usage: copy-share.cmd [verify] SHARE [SHARE...] 1>&2
exit /b 16
